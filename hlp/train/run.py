"""`hlp train`: one model per domain and seed, as the paper does, then one report.

Writes `metrics.json` and `scores_test.json` (contracts other tools read), plus per-seed
scores, the resolved config and score-timeline PNGs, and logs all of it to MLflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray

from hlp.cluster import ensure_ray
from hlp.config import ExperimentConfig, flatten, to_yaml, with_absolute_paths
from hlp.data.datasets import Dataset, grouped_skips, load_dataset_for
from hlp.data.protocols import available_domains
from hlp.evaluate.evaluation import domain_map
from hlp.placement import check_placeable
from hlp.plots import score_timelines
from hlp.storage import kept_lines
from hlp.tracking import Tracker, absolute_uri, check_reachable, local_store, run_tags
from hlp.train import model_file
from hlp.train.loop import FitResult
from hlp.train.ray_train import fit_with_ray, forget, run_key
from hlp.train.runs import run_inputs

Progress = Callable[[str, int, int], None]  # (task label, done, total)


def run_training(cfg: ExperimentConfig, output: Path, progress: Progress | None = None,
                 log: Callable[[str], None] = print, tags: dict[str, str] | None = None, say_kept: bool = True) -> dict:
    """Every seed of `cfg` on a Ray Train TorchTrainer; a rerun with the same config resumes.

    The MLflow run is found again by its `run_key` tag, so a rerun (which Ray resumes, a finished
    one without training an epoch) reopens the run that holds the curves instead of adding an
    empty one (under `resources.workers: 0` nothing is checkpointed, so every run trains afresh
    in a run of its own). `tags` mark runs made on another command's behalf (a sweep's final
    runs): their own `run_key`, and `mlflow.parentRunId` to nest them. The run ends FINISHED,
    FAILED or KILLED (Ctrl-C) whatever happens once it exists. At the end it says what it kept
    (`kept: ...` lines: each seed's Ray run, the output folder, a local MLflow store).
    """
    output.mkdir(parents=True, exist_ok=True)
    cfg = with_absolute_paths(cfg)
    dataset, domains, notes = preflight(cfg, log)
    tags = {**({"run_key": training_key(cfg)} if cfg.resources.workers else {}), **(tags or {})}
    parent = tags.pop("mlflow.parentRunId", None)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, tags.pop("run_name", cfg.name),
                      {**run_tags(cfg), **tags}, cfg.tracking.enabled, parent_run_id=parent,
                      reuse_tag=("run_key", tags["run_key"]) if "run_key" in tags else None)
    with tracker:
        metrics = _train_and_report(cfg, output, tracker, dataset, domains, notes, progress, log)
    metrics["mlflow_run_id"] = tracker.run_id
    if say_kept:  # a sweep says it once for all its runs
        for line in kept_lines({"outputs": str(output), **local_store(cfg.tracking.uri, cfg.tracking.experiment)}):
            log(line)
    return metrics


def training_key(cfg: ExperimentConfig) -> str:
    """What a rerun resumes: the Ray runs of this config's seeds under this storage path."""
    runs = [cfg.resources.storage_path, *(run_key(cfg, seed) for seed in cfg.train.seeds)]
    return f"{cfg.name}-{hashlib.sha1(json.dumps(runs).encode()).hexdigest()[:10]}"


def _train_and_report(cfg: ExperimentConfig, output: Path, tracker: Tracker, dataset: Dataset, domains: list[str],
                      notes: list[str], progress: Progress | None, log: Callable[[str], None]) -> dict:
    tracker.log_params(flatten(cfg))
    tracker.log_inputs(run_inputs(cfg, dataset, cfg.train.seeds))
    if dataset.features:  # which networks made the features, so runs on different stores compare honestly
        tracker.set_tags({f"{kind}_extractor": f"{e['name']}@{e['version']}"
                          for kind, e in (("visual", dataset.features["visual"]), ("audio", dataset.features["audio"]))})
    (output / "config.yaml").write_text(to_yaml(cfg))
    ensure_ray(cfg.resources.address)
    check_placeable(cfg.resources, cfg.resources.workers, "resources.workers", log)
    shared = ray.put(dataset)  # read once here; every seed's workers map it from the object store
    per_seed = []
    for i, seed in enumerate(cfg.train.seeds):
        fits = fit_with_ray(cfg, seed, tracker.run_id, dataset=shared, log=log)
        if i == 0:  # the seed whose models the output folder holds
            fits = _with_weights(cfg, seed, fits, output, lambda: fit_with_ray(cfg, seed, tracker.run_id,
                                                                               dataset=shared, log=log), log)
        per_seed.append(fits)
        if progress:
            progress("seeds", i + 1, len(cfg.train.seeds))
    results = {d: [fits[d] for fits in per_seed] for d in domains}
    metrics = summarise(cfg, results, dataset, notes)
    _write_outputs(output, results, metrics, dataset, cfg)
    tracker.log_metrics(_final_metrics(metrics))
    for name in ("config.yaml", "metrics.json", "scores_test.json", "timelines.png"):
        tracker.log_artifact(output / name)
    if tracker.enabled:  # the selected models, as MLflow Models (a sweep's trials log none)
        _log_models(cfg, tracker.run_id, output, results, dataset, log)
    return metrics


def _log_models(cfg: ExperimentConfig, run_id: str, output: Path, results: dict[str, list[FitResult]],
                dataset: Dataset, log: Callable[[str], None]) -> None:
    """Each domain's model file (the first seed's) as the MLflow Model `model-<domain>`, which
    holds it: the run keeps no second copy. Its input example is two clips of a validation video.
    The log says the URIs `hlp predict --model` takes."""
    for domain, rs in results.items():
        video = dataset.videos[next(iter(rs[0].val_scores or rs[0].test_scores))]
        model_id, version = model_file.log_mlflow_model(
            absolute_uri(cfg.tracking.uri), run_id, output / _model_name(domain, rs[0].seed), domain, rs[0].seed,
            {"visual": video.visual[:2], "audio": video.audio[:2]}, cfg.tracking.register)
        log(f"MLflow Model of {domain}: models:/{model_id} (runs:/{run_id}/model-{domain})"
            + (f", registered as models:/{cfg.tracking.register}/{version}" if version else ""))


def _with_weights(cfg: ExperimentConfig, seed: int, fits: dict[str, FitResult], output: Path,
                  again: Callable[[], dict[str, FitResult]], log: Callable[[str], None]) -> dict[str, FitResult]:
    """The first seed's results with their weights. A rerun of a finished run gets none back (its
    checkpoint keeps results only); they are the model files this run wrote into `output`, and
    where those are gone the seed trains again."""
    missing = [d for d, r in fits.items() if r.state_dict is None]
    for domain in missing:
        fits[domain].state_dict = model_file.weights_of_run(output / _model_name(domain, seed), run_key(cfg, seed))
    if all(r.state_dict is not None for r in fits.values()):
        return fits
    log(f"seed {seed} finished before, but {output} holds none of its model files: it trains again")
    forget(cfg, run_key(cfg, seed))
    return again()


def _model_name(domain: str, seed: int) -> str:
    return f"model_{domain}_seed{seed}.pt"


def preflight(cfg: ExperimentConfig, log: Callable[[str], None]) -> tuple[Dataset, list[str], list[str]]:
    """Everything that can be checked before Ray starts: the tracking store, the data root, and
    which domains have features (the skipped ones are said). Raises with the culprit named."""
    if cfg.tracking.enabled:
        check_reachable(cfg.tracking.uri)
    dataset = load_dataset_for(cfg.data)
    domains, notes = available_domains(dataset, cfg.data.protocol, cfg.data.domains)
    for line in [*grouped_skips(dataset.skipped), *notes]:
        log(f"skipped: {line}")
    if not domains:
        raise ValueError(f"no domain of {cfg.data.dataset} under {dataset.root} has train and test videos")
    return dataset, domains, notes


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def ensemble_map(results: list[FitResult], dataset: Dataset) -> float:
    """Test mAP of the seeds' mean score per clip: what averaging the seeds' models would give.
    Each seed chose its epoch on validation, so the ensemble, too, is selected without test."""
    videos = [dataset.videos[vid] for vid in results[0].test_scores]
    mean = {v.video_id: np.mean([r.test_scores[v.video_id] for r in results], axis=0) for v in videos}
    return domain_map(videos, mean) if videos else float("nan")


def summarise(cfg: ExperimentConfig, results: dict[str, list[FitResult]], dataset: Dataset, notes: list[str]) -> dict:
    """The `metrics.json` contract, extended with per-seed detail, the seed ensemble and what was skipped."""
    domains = {
        d: {
            "val_map": float(np.mean([r.val_map for r in rs])),
            "test_map": float(np.mean([r.test_map for r in rs])),
            "test_map_std": _std([r.test_map for r in rs]),
            "ensemble_test_map": ensemble_map(rs, dataset),
            "per_seed": [
                {"seed": r.seed, "val_map": r.val_map, "test_map": r.test_map, "best_epoch": r.best_epoch,
                 "scoring": r.scoring}
                for r in rs
            ],
        }
        for d, rs in results.items()
    }
    return {
        "dataset": cfg.data.dataset,
        "protocol": cfg.data.protocol,
        "variant": cfg.model.variant,
        "seeds": list(cfg.train.seeds),
        "domains": domains,
        "mean_val_map": float(np.mean([v["val_map"] for v in domains.values()])),
        "mean_test_map": float(np.mean([v["test_map"] for v in domains.values()])),
        "mean_ensemble_test_map": float(np.mean([v["ensemble_test_map"] for v in domains.values()])),
        "selection": cfg.eval.selection,
        "skipped": [str(s) for s in dataset.skipped] + notes,
    }


def _write_outputs(output: Path, results: dict[str, list[FitResult]], metrics: dict, dataset: Dataset,
                   cfg: ExperimentConfig) -> None:
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for i, seed in enumerate(cfg.train.seeds):
        scores = {vid: s.tolist() for rs in results.values() for vid, s in rs[i].test_scores.items()}
        (output / f"scores_test_seed{seed}.json").write_text(json.dumps(scores))
        if i == 0:  # the contract file holds the first seed's scores; `hlp evaluate` reproduces its mAP
            (output / "scores_test.json").write_text(json.dumps(scores))
    first = [rs[0] for rs in results.values()]
    shown = {vid: dataset.videos[vid].labels for r in first for vid in list(r.test_scores)[:2]}
    scores = {vid: s for r in first for vid, s in r.test_scores.items()}
    score_timelines(dict(list(shown.items())[:6]), scores, output / "timelines.png", f"{cfg.name}: test scores (seed {cfg.train.seeds[0]})")
    for domain, rs in results.items():  # the first seed's selected model, ready for `hlp predict`
        content = model_file.payload(rs[0], cfg.model, cfg.train.window, cfg.eval.stride, dataset.features,
                                      cfg.data.normalize, run_key(cfg, rs[0].seed))
        model_file.save(str(output / _model_name(domain, rs[0].seed)), content)


def _final_metrics(metrics: dict) -> dict[str, float]:
    out = {"mean_val_map": metrics["mean_val_map"], "mean_test_map": metrics["mean_test_map"],
           "mean_ensemble_test_map": metrics["mean_ensemble_test_map"]}
    for domain, values in metrics["domains"].items():
        out[f"val_map.{domain}"] = values["val_map"]
        out[f"test_map.{domain}"] = values["test_map"]
        out[f"test_map_std.{domain}"] = values["test_map_std"]
        out[f"ensemble_test_map.{domain}"] = values["ensemble_test_map"]
    return out
