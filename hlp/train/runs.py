"""What a run is made of, without Ray Train: its replicas and their splits, and the metrics of
an epoch, shared by the TorchTrainer's workers (`ray_train`) and a sweep trial's replica tasks
(`hlp.sweep.replicas`). Apart from `ray_train` and free of torch so that a trial's own process,
which trains nothing, imports neither (0.65 s and 1.3 s of CPU per process here), and a replica
task says it has started before it imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hlp.config import ExperimentConfig
from hlp.data.datasets import Dataset, load_dataset_for
from hlp.data.inputs import CONTEXTS, DataInput, data_inputs
from hlp.data.protocols import DomainSplit, available_domains, domain_split, kfold_splits

if TYPE_CHECKING:
    # For the annotation only: the loop imports torch, which a trial's own process never needs.
    from hlp.train.loop import EpochRecord


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


def run_inputs(cfg: ExperimentConfig, dataset: Dataset, seeds: list[int], contexts: tuple[str, ...] = CONTEXTS,
               digests: dict[str, str] | None = None) -> list[DataInput]:
    """What a run of these seeds reads, as MLflow dataset inputs (`hlp.data.inputs`)."""
    splits = {s: load_splits(cfg, s, dataset) for s in seeds}
    folds = cfg.eval.folds if cfg.eval.selection == "kfold" else None
    return data_inputs(dataset, cfg.data.features or dataset.root, splits, folds, contexts, digests)


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


def mean_over_replicas(per_replica: list[dict[str, float]], replicas: list[dict]) -> dict[str, float]:
    """Each replica's metrics under its name (`seed1.fold0.dog.val_map`), and the mean over the
    replicas of every validation mAP (`val_map`, `dog.val_map`): what Optuna and ASHA read."""
    out: dict[str, float] = {}
    for replica, metrics in zip(replicas, per_replica):
        out.update({f"{replica_name(replica)}.{k}": v for k, v in metrics.items() if k != "epoch"})
    keys = {k for m in per_replica for k in m if k == "val_map" or k.endswith(".val_map")}
    out.update({k: float(np.mean([m[k] for m in per_replica if k in m])) for k in keys})
    return out


def run_workers(cfg: ExperimentConfig, replicas: list[dict] | None) -> int:
    """A run's workers: one per replica (a sweep trial's), else resources.workers."""
    return len(replicas) if replicas else cfg.resources.workers


def workers_key(replicas: list[dict] | None) -> str:
    """The setting that decides how many workers a run asks for."""
    if not replicas:
        return "resources.workers"
    return "search.seeds x eval.folds" if any(r.get("fold") is not None for r in replicas) else "search.seeds"
