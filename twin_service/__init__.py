"""Twin service: the learned digital twin behind HTTP (FastAPI), hot-reloaded from the registry.

See docs/twin.md. ``create_app`` in ``twin_service.app``; ``slicetwin twin`` runs it.
"""
