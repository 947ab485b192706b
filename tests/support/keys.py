"""Development signing for model files the tests load."""

from __future__ import annotations

from slicetwin.core.signing import DEV_PROMOTION_KEY, Signer
from slicetwin.registry.model_files import sign_file


def sign_dev(path, kind: str) -> None:
    """Write ``<path>.sig`` with the public development promotion key: what a model file needs
    to be loaded by a service in development mode (``slicetwin models sign`` in production)."""
    sign_file(path, Signer(DEV_PROMOTION_KEY), kind)
