"""Ray start-up glue: join the configured cluster, else start a Ray of the job's own.

Every command that uses Ray (extract, train, sweep, reproduce) starts it here, so where a job
runs is decided in one place. With no address configured a job never joins another: Ray's own
`ray.init()` would join whatever cluster was last started on the machine (its address file
under /tmp/ray), so two jobs side by side, or a test's cluster, would share and kill each other.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable

import ray

from hlp.interrupts import ray_call

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


OWN_RAY_ENV = "HLP_OWN_RAY"  # the GCS address of the Ray this process started (RAY_ADDRESS then names it too)


def own_ray() -> bool:
    """Whether this process runs on a Ray it started itself: one machine, no autoscaler, so a
    request that no node meets now is never met."""
    return ray.is_initialized() and os.environ.get(OWN_RAY_ENV) == ray.get_runtime_context().gcs_address


def to_stderr(line: str) -> None:
    """The default `log` of hlp's own lines outside the CLI."""
    print(line, file=sys.stderr, flush=True)


def verbose() -> bool:
    """Ray's own logs (its start-up lines, every worker's and controller's INFO lines such as the
    600-character `TrainingReport(...)` of each epoch, Tune's per-result tables) are shown only
    with HLP_VERBOSE=1, which the CLI's `--verbose` sets; otherwise a run shows hlp's own lines."""
    return os.environ.get("HLP_VERBOSE") == "1"


def _logging() -> dict:
    """ray.init's logging: in this process only errors (Ray's start-up lines and its advice on
    token authentication are not the user's business); in the job's workers, warnings and up.
    Train's workers then print as Python does (Train's print patch would repeat every line
    through its logger; Train passes the setting on to the workers of a joined cluster too).

    Nor does Ray forward what workers print (log_to_driver): it would come late, through Ray's
    log monitor (a run's last epoch lines after the command's closing table), deduplicated
    ("[repeated 5x across cluster]", in raw colour codes), and with Python's warnings of every
    process it starts. What hlp shows of its workers the driver prints itself: epoch lines come
    through Tune's results (a sweep's trials) or `hlp.train.progress.EpochRelay` (a TorchTrainer).
    The workers' output stays in Ray's session logs; RAY_LOG_TO_DRIVER=1 or --verbose forwards it."""
    if verbose():
        return {}
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    # Printed before ray.init applies its level: Ray 2.60's notice that token authentication is on.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    return {"logging_level": logging.ERROR, "logging_config": ray.LoggingConfig(log_level="WARNING"),
            "log_to_driver": os.environ.get("RAY_LOG_TO_DRIVER", "0").lower() in ("1", "true")}


def configured_address(address: str | None) -> str:
    """`resources.address`, else RAY_ADDRESS, else "local" (a Ray of this job's own)."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


def ensure_ray(address: str | None, log: Callable[[str], None] = to_stderr) -> None:
    """Join the cluster that `resources.address` or RAY_ADDRESS names (`auto`: the one running on
    this machine, said in the log), else start a local Ray of this job's own.

    The dashboard stays on (ray[default]): without it Ray leaks the placement groups of
    stopped trials (STACK-NOTES).
    """
    if ray.is_initialized():
        return
    ray_call(_init, configured_address(address), log, off_main=False)  # ray.init's SIGTERM handler goes again


def _init(address: str, log: Callable[[str], None]) -> None:
    if address != "local":
        log("resources.address auto: joining the Ray cluster running on this machine" if address == "auto"
            else f"joining the Ray cluster at {address}")
        ray.init(address=address, **_logging())
        return
    for key, value in LOCAL_TRAIN_ENV.items():
        os.environ.setdefault(key, value)
    _start_own_ray()


def _start_own_ray() -> None:
    """A new local Ray whose every process knows its address. Ray's helpers that look "the"
    cluster up by themselves (Train's placement-group cleaner, through the state API) read
    RAY_ADDRESS, and without it they refuse to choose, or choose another job's cluster, when
    two Rays run on one machine. The GCS port is picked here so the address is known before
    the processes start and inherit it."""
    port = _free_port()
    saved = {k: os.environ.get(k) for k in ("RAY_GCS_SERVER_PORT", "RAY_ADDRESS")}
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    os.environ["RAY_ADDRESS"] = f"{ray.util.get_node_ip_address()}:{port}"
    try:
        ray.init(address="local", **_logging())
    except BaseException:
        _restore(saved)
        raise
    os.environ.pop("RAY_GCS_SERVER_PORT", None)  # only this start takes the port
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address  # what Ray bound, for this process's helpers
    os.environ[OWN_RAY_ENV] = os.environ["RAY_ADDRESS"]
    _start_autoscaling_coordinator()


def _start_autoscaling_coordinator() -> None:
    """Every TorchTrainer first asks Ray's autoscaling coordinator (one detached actor per
    cluster, created on first use) for its workers' resources, and gives up after 5 s with a
    logged traceback; on a busy 2-CPU machine the actor's own process start takes longer than
    that. Started with the cluster, it answers every request at once. (A private Ray helper,
    so a Ray without it simply skips this.)"""
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:
        return
    ray.get(get_or_create_autoscaling_coordinator().__ray_ready__.remote(), timeout=300)


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]
