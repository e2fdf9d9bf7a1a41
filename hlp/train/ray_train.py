"""Ray Train: the per-worker function and the driver that runs it on a TorchTrainer.

Each worker takes the data from the object store when the driver shared it (one copy per node,
read by every worker there without a copy), else loads it itself from a local path or S3; it
wraps the models for DDP and runs the one training loop of `train.loop.fit` on its shard of the
windows. Every epoch all workers report together (Ray's report is a barrier); rank 0 adds the
validation metrics, logs them to MLflow and attaches a checkpoint every train.checkpoint_every
epochs. A restarted worker, or a rerun under the same run name, continues from the latest
checkpoint (the only one kept). The last report carries rank 0's results back to the driver,
since Ray does not persist checkpoint-less metrics: `results.pt` (scores and selections) and
`weights.pt` (the selected models), which the driver deletes once read. What stays is what a
rerun needs to skip the finished run: the results, no optimizer state, no weights (the model
file of the first seed is in the output folder). With `resources.workers: 0` (Ray Train's
local mode, for debugging) the function runs in the driver itself: nothing is checkpointed
(local mode keeps no checkpoint and never resumes) and the results come back as its return value.

A sweep trial's replicas, one process each, run as Ray tasks instead (`hlp.sweep.replicas`);
the helpers they share with this module (replica splits, per-epoch metrics) live here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
# Ray Train's reasons for a worker group that never started (raised inside ControllerError).
from ray.train.v2._internal.exceptions import InsufficientClusterResourcesError, WorkerGroupStartupTimeoutError

from hlp.cluster import verbose
from hlp.config import ExperimentConfig, config_from_dict
from hlp.data.datasets import Dataset
from hlp.interrupts import ray_call
from hlp.placement import START_TIMEOUT_ENV, unplaced, worker_resources
from hlp.storage import human_bytes, ray_storage, remove, size_of
from hlp.tracking import Tracker
from hlp.train.loop import EpochRecord, FitResult, Worker, fit
from hlp.train.progress import EpochLine, EpochRelay, send, with_label
from hlp.train.runs import epoch_metrics, load_splits, mean_loss, workers_key

STATE, RESULTS, WEIGHTS = "state.pt", "results.pt", "weights.pt"


def log_epoch(tracker: Tracker, seed: int, epoch: int, metrics: dict[str, float]) -> None:
    """One epoch's metrics under the seed's prefix, so every seed's curves share one MLflow run."""
    tracker.log_metrics({f"seed{seed}.{k}": v for k, v in metrics.items() if k != "epoch"}, step=epoch)


def _quiet_train_reports(quiet: bool) -> None:
    """Ray Train names the logger of its per-report line after its source file
    (`logging.getLogger(__file__)`), so RunConfig's log level misses it and every worker prints a
    600-character `TrainingReport(...)` per epoch; quiet it too unless --verbose."""
    if quiet:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)


def train_worker(config: dict) -> dict[str, FitResult] | None:
    """Ray Train's per-worker function (`train_loop_per_worker`); in the driver (workers: 0), it
    returns the results instead of checkpointing them."""
    _quiet_train_reports(config.get("quiet", False))
    in_driver = config.get("in_driver", False)
    cfg, seed = config_from_dict(config["experiment"]), int(config["seed"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    worker = Worker(rank, world, ray.train.torch.get_device(),
                    ray.train.torch.prepare_model if world > 1 else (lambda m: m))
    tracker = Tracker.attach(cfg.tracking.uri, config.get("mlflow_run_id")) if rank == 0 else None
    resume = _resume_state()
    if tracker:  # where rank 0 ran, and whether it continued a checkpoint (a retried worker does)
        tracker.set_tags({"worker_node_id": ray.get_runtime_context().get_node_id(),
                          **({"resumed_from_epoch": resume["epoch"]} if resume else {})})
    last, clock, lines = cfg.train.epochs, [time.perf_counter()], {}

    def on_epoch(record: EpochRecord, state) -> None:
        metrics = epoch_metrics(record)
        now = time.perf_counter()
        metrics["epoch_time_s"], clock[0] = now - clock[0], now  # steady-state speed, per epoch
        if tracker:
            log_epoch(tracker, seed, record.epoch, metrics)
        if rank == 0 and config.get("epoch_lines", True):  # kfold: each fold's phase, then the final model, is a run of its own
            label = f"seed {seed}" + ("" if record.phase == "final" else f" {record.phase}")
            line = lines.setdefault(record.phase, EpochLine(label, last))
            # To the driver, which prints it (a sweep's DDP trial: Tune's results carry the epochs instead).
            send(config.get("relay"), line(record.epoch, mean_loss(metrics),
                                           record.mean_val_map if record.val_map else None))
        keep = rank == 0 and not in_driver and (record.epoch % cfg.train.checkpoint_every == 0 or record.epoch == last)
        _report(metrics, {STATE: state()} if keep else None)

    finished = _finished_results() if not in_driver else None
    if finished is not None:  # a rerun of a finished run: its results, nothing trained or scored again
        _report({"final": 1, "val_map": finished.pop("val_map")}, finished if rank == 0 else None)
        return None
    results = fit(load_splits(cfg, seed, _shared(config)), cfg, seed, worker, resume, on_epoch,
                  score_test=config.get("score_test", True), track_test=config.get("track_test", False))
    if in_driver:
        return results
    # The selected models' mean validation mAP, so every report carries the metric Tune reads.
    best_val = float(np.mean([r.val_map for r in results.values()])) if results else float("nan")
    # Not "done": Tune reads that key as "trial finished" and would cut the trial short. No "epoch":
    # ASHA then passes over this report, so a trial that trained every epoch is never stopped here.
    final = {RESULTS: {**_results_payload(results), "val_map": best_val},
             WEIGHTS: {d: r.state_dict for d, r in results.items()}} if rank == 0 else None
    _report({"final": 1, "val_map": best_val}, final)


def _finished_results() -> dict | None:
    """The files of a finished run's last checkpoint (its results, and its weights if the
    driver did not get to delete them), or None when the run has not finished."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        folder = Path(directory)
        if not (folder / RESULTS).exists():
            return None
        files = {name: torch.load(folder / name, weights_only=True) for name in (RESULTS, WEIGHTS)
                 if (folder / name).exists()}
    return {"val_map": files[RESULTS].get("val_map", float("nan")), **files}


def _shared(config: dict) -> Dataset | None:
    """The dataset the driver put in the object store, if it did: a worker on the same node maps
    its arrays read-only from shared memory instead of reading every feature file again."""
    ref = config.get("dataset")
    return ray.get(ref) if ref is not None else None


def _report(metrics: dict, files: dict | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if files:
            for name, payload in files.items():
                torch.save(payload, Path(tmp) / name)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def _resume_state(name: str = STATE) -> dict | None:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        path = Path(directory) / name
        return torch.load(path, weights_only=True) if path.exists() else None


_ARRAYS = ("test_scores", "val_scores", "val_labels")  # {video id: array} fields, as tensors in the checkpoint


def _results_payload(results: dict[str, FitResult]) -> dict:
    """FitResult's fields as plain values and tensors (what `torch.load(weights_only=True)` reads);
    the domain is the key."""
    plain = [f.name for f in fields(FitResult) if f.name not in (*_ARRAYS, "domain", "state_dict")]  # weights apart
    return {"results": {d: {**{k: getattr(r, k) for k in plain},
                            **{k: {v: torch.tensor(a) for v, a in getattr(r, k).items()} for k in _ARRAYS}}  # copies: arrays may be read-only
                        for d, r in results.items()}}


def run_key(cfg: ExperimentConfig, seed: int) -> str:
    """Same config and seed -> same Ray run name, so a rerun resumes instead of starting over."""
    payload = cfg.model_dump(exclude={"tracking", "resources"})
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.name}-{digest}-seed{seed}"


def fit_with_ray(cfg: ExperimentConfig, seed: int, mlflow_run_id: str | None, *, run_name: str | None = None,
                 callbacks: list | None = None, score_test: bool = True, track_test: bool = False,
                 dataset: ray.ObjectRef | None = None, log: Callable[[str], None] | None = None,
                 epoch_lines: bool = True) -> dict[str, FitResult]:
    """The driver: one TorchTrainer for one seed, all domains of the experiment, on
    resources.workers workers. `dataset`, from `ray.put(load_dataset_for(cfg.data))`, spares
    every worker its own read. `log` gets the epoch lines, when this process is Ray's driver
    (elsewhere, as in a reproduction's task, rank 0 prints them; `epoch_lines` False: none, as
    a sweep's trial reports its epochs to Tune instead), and one line: what the run keeps, where,
    and its size. A rerun of a finished run returns its results without weights (`state_dict` None)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    res, quiet = cfg.resources, not verbose()
    workers = res.workers
    storage_path, filesystem = ray_storage(res.storage_path)
    name = run_name or run_key(cfg, seed)
    os.environ[START_TIMEOUT_ENV] = f"{res.start_timeout_s:g}"
    in_driver = ray.get_runtime_context().worker.mode == ray.SCRIPT_MODE
    relay = EpochRelay(log) if epoch_lines and log and in_driver else None
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"experiment": cfg.model_dump(), "seed": seed, "mlflow_run_id": mlflow_run_id,
                           "score_test": score_test, "track_test": track_test,
                           "dataset": dataset, "in_driver": workers == 0, "quiet": quiet,
                           "epoch_lines": epoch_lines, "relay": relay.target if relay else None},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=res.use_gpu, resources_per_worker=worker_resources(res)),
        # One checkpoint: a resumed run continues from the latest, and Ray deletes the previous
        # one only once the next is stored. A worker group that does not start within
        # start_timeout_s fails the run (Ray's default, -1, retries the start for ever).
        run_config=RunConfig(name=name, storage_path=storage_path, storage_filesystem=filesystem,
                             failure_config=FailureConfig(max_failures=res.max_failures, controller_failure_limit=0),
                             checkpoint_config=CheckpointConfig(num_to_keep=1), callbacks=callbacks,
                             # Train's own INFO lines (a 600-character TrainingReport per epoch) only
                             # with --verbose; rank 0 hands hlp's epoch line to the driver instead.
                             logging_config=ray.train.LoggingConfig(log_level="WARNING" if quiet else "INFO")),
    )
    try:
        with relay or contextlib.nullcontext():  # every epoch line is said before fit_with_ray returns
            result = ray_call(trainer.fit)  # Ctrl-C and SIGTERM: hlp.interrupts
    except ray.train.ControllerError as exc:
        if isinstance(exc.controller_failure, (WorkerGroupStartupTimeoutError, InsufficientClusterResourcesError)):
            raise unplaced(res, workers, workers_key(None)) from None
        raise
    if workers == 0:
        if log:
            log(with_label("kept: no checkpoint (resources.workers: 0 trains in this process, for debugging)"))
        return result.return_value
    _drop_stale_checkpoints(result.checkpoint)
    results = _read_final(result.checkpoint)
    if log:
        log(with_label(f"kept: {run_folder(cfg, name)}, {human_bytes(size_of(run_folder(cfg, name)))}"
                       f" (what a rerun reads to skip this finished run: results, no weights or optimizer state)"))
    return results


def _read_final(checkpoint) -> dict[str, FitResult]:
    """Rank 0's results from the last checkpoint; its weights file is deleted once read."""
    with checkpoint.as_directory() as directory:
        folder = Path(directory)
        payload = torch.load(folder / RESULTS, weights_only=True)["results"]
        weights = torch.load(folder / WEIGHTS, weights_only=True) if (folder / WEIGHTS).exists() else {}
    if weights:
        checkpoint.filesystem.delete_file(f"{checkpoint.path.rstrip('/')}/{WEIGHTS}")
    # (A checkpoint from before issue 22 holds the weights inside its results.)
    return {d: FitResult(domain=d, **{**r, "state_dict": weights.get(d, r.get("state_dict")),
                                      **{k: {v: t.numpy() for v, t in r[k].items()} for k in _ARRAYS}})
            for d, r in payload.items()}


def forget(cfg: ExperimentConfig, name: str) -> None:
    """Delete the Ray run `name` under resources.storage_path, so that it trains anew (its
    finished checkpoint keeps no weights, and a rerun that needs them must train them again)."""
    remove(run_folder(cfg, name))


def run_folder(cfg: ExperimentConfig, name: str) -> str:
    """The Ray run `name` under resources.storage_path, as a path hlp.storage reads (local or s3://)."""
    return f"{cfg.resources.storage_path.rstrip('/')}/{name}"


def _drop_stale_checkpoints(latest) -> None:
    """Delete the run's checkpoints other than its latest: a process killed while it stored one
    leaves a directory that Ray never registered, so never deletes (0.5 GB at d=256)."""
    import pyarrow.fs

    fs, folder = latest.filesystem, latest.path.rstrip("/").rsplit("/", 1)[0]
    for info in fs.get_file_info(pyarrow.fs.FileSelector(folder)):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_") \
                and info.path.rstrip("/") != latest.path.rstrip("/"):
            fs.delete_dir(info.path)
