"""Ray Train: the per-worker function and the driver that runs it on a TorchTrainer.

Each worker takes the data from the object store when the driver shared it (one copy per node,
read by every worker there without a copy), else loads it itself from a local path or S3; it
wraps the models for DDP and runs the one training loop of `train.loop.fit` on its shard of the
windows. Every epoch all workers report together (Ray's report is a barrier); rank 0 adds the
validation metrics, logs them to MLflow and attaches a checkpoint. A restarted worker, or a
rerun under the same run name, continues from the latest checkpoint (the only one kept: a
d=256 run's is ~0.5 GB). The final report carries rank 0's results back to the driver inside the
last checkpoint, since Ray does not persist checkpoint-less metrics. With `resources.workers: 0`
(Ray Train's local mode, for debugging) the function runs in the driver itself: nothing is
checkpointed (local mode keeps no checkpoint and never resumes) and the results come back as its
return value.

A sweep trial instead runs replicas: one worker per (seed, fold) of `search.seeds` (and the
folds of eval.selection kfold), each its own model on its own split, side by side. Every epoch
rank 0 gathers their validation mAP and reports the mean, the objective Tune reads; each
replica checkpoints its own state into the shared checkpoint directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import tempfile
import threading
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
from hlp.data.datasets import Dataset, load_dataset_for
from hlp.data.protocols import (
    DomainSplit,
    available_domains,
    domain_split,
    kfold_splits,
)
from hlp.placement import START_TIMEOUT_ENV, unplaced, worker_resources
from hlp.storage import ray_storage
from hlp.tracking import Tracker
from hlp.train.loop import EpochRecord, FitResult, Worker, fit
from hlp.train.progress import EpochLine

STATE, RESULTS = "state.pt", "results.pt"


def replica_name(replica: dict) -> str:
    """`seed<N>`, or `seed<N>.fold<k>` for a fold of eval.selection kfold."""
    return f"seed{replica['seed']}" + (f".fold{replica['fold']}" if replica.get("fold") is not None else "")


def replicas_of(cfg: ExperimentConfig) -> list[dict]:
    """The (seed, fold) pairs whose mean validation mAP is a sweep trial's objective."""
    folds = range(cfg.eval.folds) if cfg.eval.selection == "kfold" else [None]
    return [{"seed": s, "fold": k} for s in cfg.search.seeds for k in folds]


def trial_replicas(cfg: ExperimentConfig) -> list[dict] | None:
    """A sweep trial's replicas, one worker each; None when one carved seed trains as `hlp train`
    does (on resources.workers workers)."""
    replicas = replicas_of(cfg)
    return replicas if len(replicas) > 1 or replicas[0]["fold"] is not None else None


def replica_splits(cfg: ExperimentConfig, replica: dict, dataset: Dataset | None = None) -> dict[str, DomainSplit]:
    """A replica's split per domain: the carve, or fold k over all training videos (domains with
    fewer videos than folds have fewer folds, and sit that replica out)."""
    splits = load_splits(cfg, replica["seed"], dataset)
    if replica.get("fold") is None:
        return splits
    folds = {d: kfold_splits(s, cfg.eval.folds, replica["seed"]) for d, s in splits.items()}
    return {d: f[replica["fold"]] for d, f in folds.items() if replica["fold"] < len(f)}


def load_splits(cfg: ExperimentConfig, seed: int, dataset: Dataset | None = None) -> dict[str, DomainSplit]:
    """Each domain's split for `seed`, from `dataset` when it is already loaded."""
    dataset = dataset if dataset is not None else load_dataset_for(cfg.data)
    domains, _ = available_domains(dataset, cfg.data.protocol, cfg.data.domains)
    return {d: domain_split(dataset, cfg.data.protocol, d, cfg.data.val_fraction, seed) for d in domains}


def epoch_metrics(record: EpochRecord) -> dict[str, float]:
    """Flat per-epoch metrics: loss terms and validation mAP per domain, plus the mean."""
    out: dict[str, float] = {"epoch": record.epoch}
    for domain, losses in record.losses.items():
        out.update({f"{domain}.{k}": v for k, v in losses.items()})
    for domain, scores in record.val_map.items():
        out.update({f"{domain}.val_map_{mode}": v for mode, v in scores.items()})
        out[f"{domain}.val_map"] = record.best_val(domain)[0]
    if record.val_map:
        out["val_map"] = record.mean_val_map
    for domain, scores in record.test_map.items():  # only under track_test (hlp reproduce's optimistic column)
        out[f"{domain}.test_map_this_epoch"] = max(scores.values())
    if record.phase != "final":  # eval.selection kfold: each fold's curve under its own name
        return {k if k == "epoch" else f"{record.phase}.{k}": v for k, v in out.items()}
    return out


def mean_loss(metrics: dict[str, float]) -> float | None:
    """The mean total loss over the domains (and replicas) of one epoch's metrics; None at epoch 0."""
    losses = [v for k, v in metrics.items() if k.endswith(".loss_total")]
    return float(np.mean(losses)) if losses else None


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
    if config.get("replicas"):
        return _replica_worker(config)
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
    last, latest, clock, lines = cfg.train.epochs, {}, [time.perf_counter()], {}

    def on_epoch(record: EpochRecord, state) -> None:
        latest["state"] = state
        metrics = epoch_metrics(record)
        now = time.perf_counter()
        metrics["epoch_time_s"], clock[0] = now - clock[0], now  # steady-state speed, per epoch
        if tracker:
            log_epoch(tracker, seed, record.epoch, metrics)
        if rank == 0:  # kfold: each fold's phase, then the final model, is a run of its own
            label = f"seed {seed}" + ("" if record.phase == "final" else f" {record.phase}")
            line = lines.setdefault(record.phase, EpochLine(label, last))
            print(line(record.epoch, mean_loss(metrics), record.mean_val_map if record.val_map else None),
                  flush=True)
        keep = rank == 0 and not in_driver and (record.epoch % cfg.train.checkpoint_every == 0 or record.epoch == last)
        _report(metrics, {STATE: state()} if keep else None)

    results = fit(load_splits(cfg, seed, _shared(config)), cfg, seed, worker, resume, on_epoch,
                  score_test=config.get("score_test", True), track_test=config.get("track_test", False))
    if in_driver:
        return results
    final = {RESULTS: _results_payload(results)} if rank == 0 else None
    if final:  # the state goes on into the last checkpoint, the one a rerun resumes from (and the only one kept)
        state = latest["state"]() if "state" in latest else resume  # a rerun of a finished run trains no epoch
        if state is not None:
            final[STATE] = state
    # The selected models' mean validation mAP, so every report carries the metric Tune reads.
    best_val = float(np.mean([r.val_map for r in results.values()])) if results else float("nan")
    # Not "done": Tune reads that key as "trial finished" and would cut the trial short. No "epoch":
    # ASHA then passes over this report, so a trial that trained every epoch is never stopped here.
    _report({"final": 1, "val_map": best_val}, final)


def _replica_worker(config: dict) -> None:
    """One replica of a sweep trial: its own seed and split, one process, no DDP. All replicas
    run the same epochs (the loop's decisions follow rank 0), so their reports pair up."""
    cfg = config_from_dict(config["experiment"])
    rank = ray.train.get_context().get_world_rank()
    replicas = config["replicas"]
    me = replicas[rank]
    own = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"selection": "carve"})})  # a fold is a carve
    tracker = Tracker.attach(cfg.tracking.uri, config.get("mlflow_run_id")) if rank == 0 else None
    state_file = f"state_{rank}.pt"
    resume = _resume_state(state_file)
    if tracker:
        tracker.set_tags({"worker_node_id": ray.get_runtime_context().get_node_id(),
                          "replicas": ", ".join(replica_name(r) for r in replicas),
                          **({"resumed_from_epoch": resume["epoch"]} if resume else {})})
    # The per-domain objective curves travel in rank 0's state: a resumed trial still reports
    # the best of every epoch, not only of those it redid.
    last, latest, objective = cfg.train.epochs, {}, {k: list(v) for k, v in (resume or {}).get("objective", {}).items()}
    line = EpochLine(f"trial {ray.train.get_context().get_experiment_name()}", last)

    def on_epoch(record: EpochRecord, state) -> None:
        latest["state"] = state
        gathered = _gather(epoch_metrics(record))
        if rank == 0:
            metrics = mean_over_replicas(gathered, replicas)
            for key, value in metrics.items():  # the per-domain objective curve, for the final report
                if key.endswith(".val_map") and key.count(".") == 1 and (record.epoch > 0 or last == 0):
                    objective.setdefault(key, []).append(value)
            if tracker:
                tracker.log_metrics(metrics, step=record.epoch)
            print(line(record.epoch, mean_loss(metrics), metrics.get("val_map")), flush=True)
        keep = record.epoch % cfg.train.checkpoint_every == 0 or record.epoch == last
        # ASHA reads "epoch" (its time_attr) beside the mean it judges: without it, it passes over the report.
        _report({"epoch": record.epoch, **metrics} if rank == 0 else {"epoch": record.epoch},
                {state_file: with_objective(state())} if keep else None)

    def with_objective(state: dict) -> dict:
        return {**state, "objective": {k: list(v) for k, v in objective.items()}}

    results = fit(replica_splits(cfg, me, _shared(config)), own, me["seed"], Worker(0, 1, ray.train.torch.get_device()),
                  resume, on_epoch, score_test=False)
    state = with_objective(latest["state"]()) if "state" in latest else resume  # resume carries its objective
    final = {state_file: state} if state is not None else {}
    if rank == 0:
        final[RESULTS] = _results_payload(results)
    # Per domain the best epoch of the replicas' mean curve, as eval.selection kfold chooses it.
    best_val = float(np.mean([max(curve) for curve in objective.values()])) if objective else float("nan")
    _report({"final": 1, "val_map": best_val}, final or None)


def _shared(config: dict) -> Dataset | None:
    """The dataset the driver put in the object store, if it did: a worker on the same node maps
    its arrays read-only from shared memory instead of reading every feature file again."""
    ref = config.get("dataset")
    return ray.get(ref) if ref is not None else None


def _gather(metrics: dict[str, float]) -> list[dict[str, float]]:
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if world == 1:
        return [metrics]
    out: list = [None] * world
    torch.distributed.all_gather_object(out, metrics)
    return out


def mean_over_replicas(per_replica: list[dict[str, float]], replicas: list[dict]) -> dict[str, float]:
    """Each replica's metrics under its name (`seed1.fold0.dog.val_map`), and the mean over the
    replicas of every validation mAP (`val_map`, `dog.val_map`): what Optuna and ASHA read."""
    out: dict[str, float] = {}
    for replica, metrics in zip(replicas, per_replica):
        out.update({f"{replica_name(replica)}.{k}": v for k, v in metrics.items() if k != "epoch"})
    keys = {k for m in per_replica for k in m if k == "val_map" or k.endswith(".val_map")}
    out.update({k: float(np.mean([m[k] for m in per_replica if k in m])) for k in keys})
    return out


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
    plain = [f.name for f in fields(FitResult) if f.name not in _ARRAYS and f.name != "domain"]
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
                 replicas: list[dict] | None = None, dataset: ray.ObjectRef | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, FitResult]:
    """The driver: one TorchTrainer for one seed, all domains of the experiment; with `replicas`
    (a sweep trial), one worker per replica instead, and rank 0's replica's results back.
    `dataset`, from `ray.put(load_dataset_for(cfg.data))`, spares every worker its own read.
    `log` gets one line: where the run's checkpoint lies and how large it is."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    res, quiet = cfg.resources, not verbose()
    workers = run_workers(cfg, replicas)
    storage_path, filesystem = ray_storage(res.storage_path)
    name = run_name or run_key(cfg, seed)
    os.environ[START_TIMEOUT_ENV] = f"{res.start_timeout_s:g}"
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"experiment": cfg.model_dump(), "seed": seed, "mlflow_run_id": mlflow_run_id,
                           "score_test": score_test, "track_test": track_test, "replicas": replicas,
                           "dataset": dataset, "in_driver": workers == 0, "quiet": quiet},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=res.use_gpu, resources_per_worker=worker_resources(res)),
        # One checkpoint: a resumed run continues from the latest, and Ray deletes the previous
        # one only once the next is stored. A worker group that does not start within
        # start_timeout_s fails the run (Ray's default, -1, retries the start for ever).
        run_config=RunConfig(name=name, storage_path=storage_path, storage_filesystem=filesystem,
                             failure_config=FailureConfig(max_failures=res.max_failures, controller_failure_limit=0),
                             checkpoint_config=CheckpointConfig(num_to_keep=1), callbacks=callbacks,
                             # Train's own INFO lines (a 600-character TrainingReport per epoch) only
                             # with --verbose; the worker prints hlp's epoch line instead.
                             logging_config=ray.train.LoggingConfig(log_level="WARNING" if quiet else "INFO")),
    )
    try:
        result = _fit(trainer)
    except ray.train.ControllerError as exc:
        if isinstance(exc.controller_failure, (WorkerGroupStartupTimeoutError, InsufficientClusterResourcesError)):
            raise unplaced(res, workers, workers_key(replicas)) from None
        raise
    if workers == 0:
        if log:
            log("checkpoints: none (resources.workers: 0 trains in this process, for debugging)")
        return result.return_value
    if log:
        log(f"checkpoints: {storage_path.rstrip('/')}/{name} (latest {_size_mb(result.checkpoint):.1f} MB)")
    _drop_stale_checkpoints(result.checkpoint)
    with result.checkpoint.as_directory() as directory:
        payload = torch.load(Path(directory) / RESULTS, weights_only=True)["results"]
    return {d: FitResult(domain=d, **{**r, **{k: {v: t.numpy() for v, t in r[k].items()} for k in _ARRAYS}})
            for d, r in payload.items()}


def run_workers(cfg: ExperimentConfig, replicas: list[dict] | None) -> int:
    """A run's Ray Train workers: one per replica (a sweep trial's), else resources.workers."""
    return len(replicas) if replicas else cfg.resources.workers


def workers_key(replicas: list[dict] | None) -> str:
    """The setting that decides how many workers a run asks for."""
    if not replicas:
        return "resources.workers"
    return "search.seeds x eval.folds" if any(r.get("fold") is not None for r in replicas) else "search.seeds"


def _fit(trainer):
    """`trainer.fit()`, interrupted as the rest of hlp is. In the main thread Ray Train installs
    its own Ctrl-C handler, which aborts the run and then calls `sys.exit(0)` (an interrupted
    command would exit as a success) and stays installed after fit; so its exit becomes
    KeyboardInterrupt here and the previous handler comes back."""
    if threading.current_thread() is not threading.main_thread():
        return trainer.fit()
    previous = signal.getsignal(signal.SIGINT)
    try:
        return trainer.fit()
    except SystemExit as exc:
        raise KeyboardInterrupt("Ray Train aborted the run") from exc
    finally:
        signal.signal(signal.SIGINT, previous)


def _drop_stale_checkpoints(latest) -> None:
    """Delete the run's checkpoints other than its latest: a process killed while it stored one
    leaves a directory that Ray never registered, so never deletes (0.5 GB at d=256)."""
    import pyarrow.fs

    fs, folder = latest.filesystem, latest.path.rstrip("/").rsplit("/", 1)[0]
    for info in fs.get_file_info(pyarrow.fs.FileSelector(folder)):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_") \
                and info.path.rstrip("/") != latest.path.rstrip("/"):
            fs.delete_dir(info.path)


def _size_mb(checkpoint) -> float:
    """The checkpoint's size on its filesystem (local or S3), without downloading it."""
    import pyarrow.fs

    infos = checkpoint.filesystem.get_file_info(pyarrow.fs.FileSelector(checkpoint.path, recursive=True))
    return sum(i.size for i in infos if i.type == pyarrow.fs.FileType.File) / 2**20
