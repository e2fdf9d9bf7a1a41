"""A sweep trial's replicas without a TorchTrainer: one Ray task per (seed, fold), in lockstep.

A replica fits in one process and needs no DDP, so the trial (Tune's function trainable) runs
each replica as a streaming Ray task that asks for resources.cpus_per_worker CPUs (and
resources.gpus_per_worker GPUs under use_gpu): `fit_steps`, the one training loop, yielding
every epoch. Tasks run on Ray's pooled worker processes, which keep torch and hlp imported from
one trial to the next; a TorchTrainer per trial instead started 7 new processes (issue 22:
15-21 s before the first epoch). No placement group: removing one kills the processes that ran
in it, pooled or not, and a trial whose process dies would leave its group holding the CPUs;
the sweep's concurrency limiter already starts no more trials than the nodes hold. A replica
that has not started within resources.start_timeout_s fails the trial, naming the keys. The trial
pairs the replicas' epochs, logs them, reports their mean validation mAP to Tune (what Optuna
and ASHA read) and stores a checkpoint every train.checkpoint_every epochs. A replica whose
process dies restarts, with the others, from the latest checkpoint, up to resources.max_failures
times, as Ray Train restarts its workers.

Replicas other than the first never stop early on their own: they follow the first, as the
replicas of a TorchTrainer did through its process group, so every epoch's mean pairs up.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from hlp.config import ExperimentConfig, config_from_dict
from hlp.placement import unplaced, worker_resources
from hlp.tracking import Tracker
from hlp.train.runs import (
    epoch_metrics,
    mean_over_replicas,
    replica_name,
    replica_splits,
    trial_replicas,
    workers_key,
)

NOTE = "note"  # a report's key for what the trial says to the person watching (a restart), beside the metrics
PROGRESS = "trial.json"  # the epoch and the per-domain curves of the replicas' mean, beside each replica's state
JUDGED = "judged_epoch"  # ASHA's time_attr: every epoch a trial reports but its last
# What a dead replica's stream raises: its process or its node is gone (other errors are the
# trial's own and fail it at once).
LOST = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
        ray.exceptions.OwnerDiedError, ray.exceptions.LocalRayletDiedError)


def state_file(rank: int) -> str:
    return f"state_{rank}.pt"


@ray.remote(max_retries=0)  # a lost replica restarts from the checkpoint with the others, never alone
def replica_epochs(experiment: dict, replica: dict, resume: bytes | None, dataset, follow_first: bool):
    """One replica as a stream: that it started, then per epoch its metrics (and its state when a
    checkpoint is due), then its results. `dataset` is the sweep's, from the object store (None:
    read it here)."""
    yield {"started": ray.get_runtime_context().get_node_id()}
    # Only now: the replica says it was placed before it spends seconds importing torch.
    import torch
    from hlp.train.loop import Worker, fit_steps

    cfg = config_from_dict(experiment)
    res, train = cfg.resources, cfg.train
    # Ray gives a task's process OMP_NUM_THREADS = its CPUs; a pooled process may have started
    # for another request, so the count is set here, as train.threads or the task's CPUs.
    torch.set_num_threads(train.threads or max(1, int(res.cpus_per_worker)))
    own = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"selection": "carve"}),  # a fold is a carve
                                 "train": train.model_copy(update={"patience": None} if follow_first else {})})
    device = torch.device("cuda" if res.use_gpu else "cpu")
    state = torch.load(io.BytesIO(resume), map_location=device, weights_only=True) if resume else None
    steps = fit_steps(replica_splits(cfg, replica, dataset), own, replica["seed"], Worker(0, 1, device), state,
                      score_test=False)
    while True:
        try:
            record, snapshot = next(steps)
        except StopIteration as done:
            yield {"results": {d: selected(r) for d, r in done.value.items()}}
            return
        keep = record.epoch % train.checkpoint_every == 0 or record.epoch == train.epochs
        yield {"epoch": record.epoch, "metrics": epoch_metrics(record), "state": _serialised(snapshot()) if keep else None}


def _serialised(state: dict) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def selected(result) -> dict:
    """What a trial keeps of a domain's training: the selection and its validation scores (for
    the figure), never weights (the final runs retrain), and no torch objects, so that the
    trial's own process needs no torch."""
    return {"val_map": result.val_map, "best_epoch": result.best_epoch, "scoring": result.scoring,
            "val_scores": result.val_scores, "val_labels": result.val_labels}


def run_replicas(cfg: ExperimentConfig, replicas: list[dict], tracker: Tracker, dataset, name: str,
                 log=print) -> dict[str, dict]:
    """Train the trial's replicas side by side; the first replica's selections (`selected`).
    What the trial has to say goes to the sweep's driver with its next report to Tune (`NOTE`),
    which prints it (`hlp.sweep.trial.EpochLines`); `log` is no longer used."""
    res = cfg.resources
    need = worker_resources(res)
    tracker.set_tags({"replicas": ", ".join(replica_name(r) for r in replicas)})
    streams: list = []
    attempt = 0
    notes: list[str] = []
    try:
        while True:
            resume = _latest_checkpoint(len(replicas))
            if resume is not None:
                tracker.set_tags({"resumed_from_epoch": resume["epoch"]})
            states = (resume or {}).get("states", [None] * len(replicas))
            # DEFAULT: Tune runs the trial in a placement group of its own (its token of memory)
            # and would put the replicas there too, where their CPUs are not.
            streams = [replica_epochs.options(num_cpus=need["CPU"], num_gpus=need.get("GPU", 0),
                                              scheduling_strategy="DEFAULT").remote(
                cfg.model_dump(), replica, states[rank], dataset, rank > 0) for rank, replica in enumerate(replicas)]
            try:
                tracker.set_tags({"worker_node_id": _started(cfg, streams)})
                return _lockstep(cfg, replicas, streams, tracker, (resume or {}).get("objective", {}), name, notes)
            except LOST as exc:
                _stop(streams)
                attempt += 1
                if attempt > res.max_failures:
                    raise
                notes.append(f"a replica's process was lost ({type(exc).__name__}); the replicas restart "
                             f"from the latest checkpoint ({attempt} of resources.max_failures {res.max_failures})")
    finally:
        _stop(streams)


def _started(cfg: ExperimentConfig, streams: list) -> str:
    """Wait until every replica has started, up to resources.start_timeout_s, else fail with the
    keys to change; the node of the first replica."""
    deadline = time.monotonic() + cfg.resources.start_timeout_s
    while not all(stream.next_ready() or stream.is_finished() for stream in streams):
        if time.monotonic() > deadline:
            raise unplaced(cfg.resources, len(streams), workers_key(trial_replicas(cfg)), who="the trial")
        time.sleep(0.1)
    return [ray.get(next(stream))["started"] for stream in streams][0]


def _lockstep(cfg: ExperimentConfig, replicas: list[dict], streams: list, tracker: Tracker,
              objective: dict[str, list[float]], name: str, notes: list[str]) -> dict[str, dict]:
    """Pair the replicas' epochs and report each to Tune; the sweep's driver prints the epoch
    lines from those reports (and `notes`, sent with the next one)."""
    from ray import tune

    last = cfg.train.epochs
    while True:
        first = ray.get(next(streams[0]))
        if "results" in first:  # the others follow the first: what they would still do is not needed
            break
        items = [first, *(ray.get(next(s)) for s in streams[1:])]
        epoch = first["epoch"]
        metrics = mean_over_replicas([item["metrics"] for item in items], replicas)
        for key, value in metrics.items():  # the per-domain objective curve, for the final report
            if key.endswith(".val_map") and key.count(".") == 1 and (epoch > 0 or last == 0):
                objective.setdefault(key, []).append(value)
        tracker.log_metrics(metrics, step=epoch)
        said = {NOTE: "; ".join(notes)} if notes else {}
        notes.clear()
        states = [item["state"] for item in items]
        # ASHA reads JUDGED (its time_attr) beside the mean it judges; the last epoch goes
        # without it, so ASHA never stops a trial that has trained every epoch before its final
        # report (a rung at the last epoch saves nothing, and the trial would end unrecorded).
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = _checkpoint(Path(tmp), epoch, states, objective) if states[0] is not None else None
            tune.report({"epoch": epoch, **({JUDGED: epoch} if epoch < last else {}), **metrics, **said},
                        checkpoint=checkpoint)
    # Per domain the best epoch of the replicas' mean curve, as eval.selection kfold chooses it.
    best_val = float(np.mean([max(curve) for curve in objective.values()])) if objective else float("nan")
    # Not "done": Tune reads that key as "trial finished". No JUDGED: ASHA passes over this report.
    tune.report({"final": 1, "val_map": best_val})
    return first["results"]


def _checkpoint(folder: Path, epoch: int, states: list[bytes], objective: dict[str, list[float]]):
    from ray.tune import Checkpoint

    for rank, state in enumerate(states):
        (folder / state_file(rank)).write_bytes(state)
    (folder / PROGRESS).write_text(json.dumps({"epoch": epoch, "objective": objective}))
    return Checkpoint.from_directory(str(folder))


def ended() -> dict | None:
    """How the trial ended, if its checkpoint says it already did (`hlp.sweep.keep`): a sweep
    resumed from a state saved before that trial ended runs it once more, and it only reports."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        path = Path(directory) / PROGRESS
        return json.loads(path.read_text()).get("ended") if path.exists() else None


def _latest_checkpoint(replicas: int) -> dict | None:
    """The trial's latest checkpoint (Tune's, of this try or of an earlier one): each replica's
    state as bytes, the objective curves, and the epoch it holds."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        folder = Path(directory)
        states = [(folder / state_file(rank)).read_bytes() for rank in range(replicas)]
        progress = json.loads((folder / PROGRESS).read_text())
    return {"states": states, **progress}


def _stop(streams: list, wait_s: float = 10.0) -> None:
    """End the replicas' tasks that still run (the first has returned its results, or the trial
    stops) and wait for them to end, so that none trains on beside the next trial."""
    running = [stream for stream in streams if not stream.is_finished()]
    for stream in running:
        try:
            ray.cancel(stream)
        except (TypeError, ValueError, ray.exceptions.RayError):
            pass  # ended meanwhile
    if running:
        ray.wait([stream.completed() for stream in running], num_returns=len(running), timeout=wait_s)
