"""SliceTwin core: slice catalogue, action codec, utility, schemas and the RAN simulator.

Nothing in this package (outside ``trainer.nets``) imports torch, so the controller can use it.
"""

__version__ = "0.1.0"
