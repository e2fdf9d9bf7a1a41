"""Ray start-up glue: join the configured cluster, else start a local one.

Every command that uses Ray (extract, train, sweep, reproduce) starts it here, so where a job
runs is decided in one place.
"""

from __future__ import annotations

import os

import ray


def ensure_ray(address: str | None) -> None:
    """Join the configured cluster (or RAY_ADDRESS), else start a local one.

    The dashboard stays on (ray[default]): without it Ray leaks the placement groups of
    stopped trials (STACK-NOTES).
    """
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None)
