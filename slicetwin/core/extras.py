"""Optional extras of the package and the error that names the missing one.

The controller image installs SliceTwin without extras (onnxruntime + numpy serve the policy);
the RAN simulator needs the ``sim`` extra (numba, gymnasium) and the trainer the ``train`` extra
(torch and the simulator's dependencies). A command that reaches for a missing extra fails with
:class:`MissingExtra`, which the CLI prints as one line saying what to install (no traceback).
"""

from __future__ import annotations


class MissingExtra(ModuleNotFoundError):
    """``module`` is not installed; ``extra`` is the package extra that brings it."""

    def __init__(self, module: str, extra: str, feature: str):
        super().__init__(f"{feature} needs {module}, which is not installed here: install "
                         f"SliceTwin with its {extra!r} extra (pip install 'slicetwin[{extra}]')",
                         name=module)
        self.extra = extra
        self.feature = feature


def missing(error: ModuleNotFoundError, modules: tuple[str, ...], extra: str,
            feature: str) -> ModuleNotFoundError:
    """``error`` as a MissingExtra when it is one of ``modules`` (top-level names) that is
    missing, else ``error`` itself (a broken install of something else must not be renamed)."""
    top = (error.name or "").split(".")[0]
    return MissingExtra(top, extra, feature) if top in modules else error


SIM_FEATURE = "the RAN simulator (fake gNB, baselines, demo, trainer)"
