"""Ray Train: the per-worker function and the driver that runs it on a TorchTrainer.

Each worker takes the data from the object store when the driver shared it (one copy per node,
read by every worker there without a copy), else loads it itself from a local path or S3; it
wraps the models for DDP and runs the one training loop of `train.loop.fit` on its shard of the
windows. Every epoch all workers report together (Ray's report is a barrier); rank 0 adds the
validation metrics, logs them to MLflow and attaches a checkpoint. A restarted worker, or a
rerun under the same run name, continues from the latest checkpoint. The final report carries
rank 0's results back to the driver inside the last checkpoint, since Ray does not persist
checkpoint-less metrics.

A sweep trial instead runs replicas: one worker per (seed, fold) of `search.seeds` (and the
folds of eval.selection kfold), each its own model on its own split, side by side. Every epoch
rank 0 gathers their validation mAP and reports the mean, the objective Tune reads; each
replica checkpoints its own state into the shared checkpoint directory.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from hlp.config import ExperimentConfig, config_from_dict
from hlp.data.datasets import Dataset, load_dataset_for
from hlp.data.protocols import (
    DomainSplit,
    available_domains,
    domain_split,
    kfold_splits,
)
from hlp.storage import ray_storage
from hlp.tracking import Tracker
from hlp.train.loop import EpochRecord, FitResult, Worker, fit

STATE, RESULTS = "state.pt", "results.pt"


def replica_name(replica: dict) -> str:
    """`seed<N>`, or `seed<N>.fold<k>` for a fold of eval.selection kfold."""
    return f"seed{replica['seed']}" + (f".fold{replica['fold']}" if replica.get("fold") is not None else "")


def replicas_of(cfg: ExperimentConfig) -> list[dict]:
    """The (seed, fold) pairs whose mean validation mAP is a sweep trial's objective."""
    folds = range(cfg.eval.folds) if cfg.eval.selection == "kfold" else [None]
    return [{"seed": s, "fold": k} for s in cfg.search.seeds for k in folds]


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


def log_epoch(tracker: Tracker, seed: int, epoch: int, metrics: dict[str, float]) -> None:
    """One epoch's metrics under the seed's prefix, so every seed's curves share one MLflow run."""
    tracker.log_metrics({f"seed{seed}.{k}": v for k, v in metrics.items() if k != "epoch"}, step=epoch)


def train_worker(config: dict) -> None:
    """Ray Train's per-worker function (`train_loop_per_worker`)."""
    if config.get("replicas"):
        return _replica_worker(config)
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
    last, latest, clock = cfg.train.epochs, {}, [time.perf_counter()]

    def on_epoch(record: EpochRecord, state) -> None:
        latest["state"] = state
        metrics = epoch_metrics(record)
        now = time.perf_counter()
        metrics["epoch_time_s"], clock[0] = now - clock[0], now  # steady-state speed, per epoch
        if tracker:
            log_epoch(tracker, seed, record.epoch, metrics)
        keep = rank == 0 and (record.epoch % cfg.train.checkpoint_every == 0 or record.epoch == last)
        _report(metrics, {STATE: state()} if keep else None)

    results = fit(load_splits(cfg, seed, _shared(config)), cfg, seed, worker, resume, on_epoch,
                  score_test=config.get("score_test", True), track_test=config.get("track_test", False))
    final = {RESULTS: _results_payload(results)} if rank == 0 else None
    if final and "state" in latest:  # a rerun of a finished run then redoes no epoch
        final[STATE] = latest["state"]()
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
        keep = record.epoch % cfg.train.checkpoint_every == 0 or record.epoch == last
        _report(metrics if rank == 0 else {"epoch": record.epoch}, {state_file: with_objective(state())} if keep else None)

    def with_objective(state: dict) -> dict:
        return {**state, "objective": {k: list(v) for k, v in objective.items()}}

    results = fit(replica_splits(cfg, me, _shared(config)), own, me["seed"], Worker(0, 1, ray.train.torch.get_device()),
                  resume, on_epoch, score_test=False)
    final = {state_file: with_objective(latest["state"]())} if "state" in latest else {}
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
                            **{k: {v: torch.from_numpy(a) for v, a in getattr(r, k).items()} for k in _ARRAYS}}
                        for d, r in results.items()}}


def run_key(cfg: ExperimentConfig, seed: int) -> str:
    """Same config and seed -> same Ray run name, so a rerun resumes instead of starting over."""
    payload = cfg.model_dump(exclude={"tracking", "resources"})
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.name}-{digest}-seed{seed}"


def fit_with_ray(cfg: ExperimentConfig, seed: int, mlflow_run_id: str | None, *, run_name: str | None = None,
                 callbacks: list | None = None, score_test: bool = True, track_test: bool = False,
                 replicas: list[dict] | None = None, dataset: ray.ObjectRef | None = None) -> dict[str, FitResult]:
    """The driver: one TorchTrainer for one seed, all domains of the experiment; with `replicas`
    (a sweep trial), one worker per replica instead, and rank 0's replica's results back.
    `dataset`, from `ray.put(load_dataset_for(cfg.data))`, spares every worker its own read."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    res = cfg.resources
    storage_path, filesystem = ray_storage(res.storage_path)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"experiment": cfg.model_dump(), "seed": seed, "mlflow_run_id": mlflow_run_id,
                           "score_test": score_test, "track_test": track_test, "replicas": replicas,
                           "dataset": dataset},
        scaling_config=ScalingConfig(num_workers=len(replicas) if replicas else res.workers, use_gpu=res.use_gpu,
                                     resources_per_worker={"CPU": res.cpus_per_worker}),
        run_config=RunConfig(name=run_name or run_key(cfg, seed), storage_path=storage_path,
                             storage_filesystem=filesystem, failure_config=FailureConfig(max_failures=res.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2), callbacks=callbacks),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as directory:
        payload = torch.load(Path(directory) / RESULTS, weights_only=True)["results"]
    return {d: FitResult(domain=d, **{**r, **{k: {v: t.numpy() for v, t in r[k].items()} for k in _ARRAYS}})
            for d, r in payload.items()}
