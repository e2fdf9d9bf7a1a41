"""Ray start-up glue: join the configured cluster, else start a local one.

Every command that uses Ray (extract, train, sweep, reproduce) starts it here, so where a job
runs is decided in one place.
"""

from __future__ import annotations

import os

import ray

# Ray Train settings for a Ray that hlp starts on this machine, measured with
# benchmarks/sweep_costs.py (README: Sweeps). Every process of that Ray inherits them, and each
# TorchTrainer passes them on to its controller. A user's own value of the variable wins, and a
# cluster that hlp joins keeps Ray's defaults.
LOCAL_TRAIN_ENV = {
    # The controller polls its workers every 2 s by default, so a trial waits up to 2 s to be
    # seen finished; polling one local worker costs a local call.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    # One actor process per TorchTrainer that watches for a node being drained (spot
    # preemption); a machine of one's own is never drained, and the process costs seconds to start.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def ensure_ray(address: str | None) -> None:
    """Join the configured cluster (or RAY_ADDRESS), else start a local one.

    The dashboard stays on (ray[default]): without it Ray leaks the placement groups of
    stopped trials (STACK-NOTES).
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "local"):
        for key, value in LOCAL_TRAIN_ENV.items():
            os.environ.setdefault(key, value)
    ray.init(address=address)
