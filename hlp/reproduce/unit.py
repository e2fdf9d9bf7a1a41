"""One unit of `hlp reproduce`: one config, one seed, every domain; run as a Ray task.

`resources.workers: 0` trains inside the task (the paper's models are small, and a TorchTrainer
costs ~20 s of start-up per run on 2 CPUs, see benchmarks/sweep_costs.py); `workers >= 1` makes
the task a Train V2 driver that builds a TorchTrainer (DDP, checkpoints, FailureConfig).
Either way it returns plain numbers and arrays: per-domain validation-selected and
test-selected mAP, each test video's AP (for the paired statistics) and scores (for the
figures), and for Figure 3 the eq. (7) embeddings of test segments.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hlp.config import ExperimentConfig, config_from_dict
from hlp.data.batching import collate
from hlp.data.datasets import load_dataset_for
from hlp.data.protocols import DomainSplit
from hlp.evaluate.evaluation import video_aps
from hlp.tracking import Tracker
from hlp.train.loop import FitResult, build_network, fit
from hlp.train.ray_train import fit_with_ray, forget, log_epoch
from hlp.train.runs import epoch_metrics, load_splits

EMBEDDED_SEGMENTS = 600  # per domain: enough points for a readable t-SNE, few enough to run in seconds


def train_unit(experiment: dict, seed: int, mlflow_run_id: str | None, run_name: str, embed: bool) -> dict:
    import ray

    cfg = config_from_dict(experiment, run_name)
    started = time.perf_counter()
    dataset = load_dataset_for(cfg.data)
    splits = load_splits(cfg, seed, dataset)
    if cfg.resources.workers == 0:
        results = _fit_here(cfg, splits, seed, mlflow_run_id)
    else:  # the workers map this unit's read from the object store
        results = fit_with_ray(cfg, seed, mlflow_run_id, run_name=run_name, track_test=True, dataset=ray.put(dataset))
        if embed and any(r.state_dict is None for r in results.values()):
            # Its Ray run finished before but its result was never stored (the job stopped in
            # between): a finished run keeps no weights, and the embeddings need them.
            forget(cfg, run_name)
            results = fit_with_ray(cfg, seed, mlflow_run_id, run_name=run_name, track_test=True,
                                   dataset=ray.put(dataset))
    out = {"seed": seed, "node_id": ray.get_runtime_context().get_node_id(),
           "domains": {d: _domain_summary(r, splits[d]) for d, r in results.items()}}
    if embed:
        out["embeddings"] = {d: test_embeddings(cfg, r, splits[d], seed) for d, r in results.items()}
    out["seconds"] = time.perf_counter() - started
    return out


def _fit_here(cfg: ExperimentConfig, splits: dict[str, DomainSplit], seed: int,
              mlflow_run_id: str | None) -> dict[str, FitResult]:

    tracker = Tracker.attach(cfg.tracking.uri, mlflow_run_id)

    def on_epoch(record, _state) -> None:  # the same per-epoch curves a TorchTrainer run logs
        log_epoch(tracker, seed, record.epoch, epoch_metrics(record))

    return fit(splits, cfg, seed, on_epoch=on_epoch, track_test=True)


def _domain_summary(r: FitResult, split: DomainSplit) -> dict:
    return {
        "val_map": r.val_map, "test_map": r.test_map, "best_epoch": r.best_epoch, "scoring": r.scoring,
        "oracle_test_map": r.test_selected_map, "oracle_epoch": r.test_selected_epoch, "oracle_scoring": r.test_selected_scoring,
        "video_ap": video_aps(split.test, r.test_scores),
        "test_scores": {vid: [round(float(x), 5) for x in s] for vid, s in r.test_scores.items()},
        "videos": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
    }


@torch.no_grad()
def test_embeddings(cfg: ExperimentConfig, result: FitResult, split: DomainSplit, seed: int) -> dict[str, np.ndarray]:
    """Eq. (7) segment embeddings of the selected model over whole test videos, with labels;
    a seeded subsample keeps t-SNE quick on long domains."""
    model = build_network(cfg.model, result.visual_dim, result.audio_dim, cfg.data.normalize)
    model.load_state_dict(result.state_dict)
    model.eval()
    vectors, labels = [], []
    for video in split.test:
        batch = collate([(video, np.arange(video.num_clips))])
        vectors.append(model(batch.visual, batch.audio, batch.mask).embedding[0].float().numpy())
        labels.append(video.labels)
    x, y = np.concatenate(vectors), np.concatenate(labels)
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:EMBEDDED_SEGMENTS])
    return {"x": x[keep].astype(np.float32), "y": y[keep].astype(bool)}
