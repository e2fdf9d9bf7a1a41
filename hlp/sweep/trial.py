"""One sweep trial: a Train V2 driver that runs a TorchTrainer and records the trial in MLflow.

Tune calls `trial` as a plain function (passing a Trainer to a Tuner is refused under V2).
The trainer runs one worker per replica, a (seed, fold) of `search.seeds` and eval.selection;
`TuneReportCallback` forwards rank 0's per-epoch mean validation mAP over the replicas to
Tune, which Optuna and ASHA read. The child run gets what a person comparing trials wants to open: the resolved
YAML, the selected weights per domain, and predicted scores against labels on validation
videos. Trials never score the test split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hlp.config import ExperimentConfig, config_from_dict, flatten, set_dotted, to_yaml
from hlp.plots import score_timelines
from hlp.tracking import Tracker, run_tags
from hlp.train import model_file
from hlp.train.loop import FitResult
from hlp.train.ray_train import fit_with_ray, trial_replicas

SHOWN_VIDEOS = 6  # validation videos in the trial's score figure


def trial(params: dict, base: dict, parent_run_id: str | None, sweep_name: str, shared: list | None = None) -> None:
    """Tune's function trainable for one sampled configuration. `shared` holds the sweep's
    dataset in the object store (None where the space changes what is read)."""
    import ray
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    cfg = config_from_dict(set_dotted(base, params), f"trial {trial_id}")
    tags = {"sweep": sweep_name, "trial_id": trial_id, "node_id": ray.get_runtime_context().get_node_id(),
            **run_tags(cfg)}
    child = Tracker(cfg.tracking.uri, cfg.tracking.experiment, f"{sweep_name}-{trial_id}", tags,
                    cfg.tracking.enabled, parent_run_id=parent_run_id, reuse_tag=("trial_id", trial_id))
    with child:  # FINISHED; FAILED on an error; KILLED when the trial's process is told to exit
        child.log_params(flatten(cfg))
        _log_text(child, "config.yaml", to_yaml(cfg))  # first, so a trial that ASHA stops still has it
        # Named after the trial with no timestamp: a retried or resumed trial finds its checkpoints.
        results = fit_with_ray(cfg, cfg.search.seeds[0], child.run_id, run_name=f"{sweep_name}-{trial_id}",
                               callbacks=[TuneReportCallback()], score_test=False, replicas=trial_replicas(cfg),
                               dataset=(shared or [None])[0], log=print)
        child.log_metrics({f"val_map.{d}": r.val_map for d, r in results.items()})
        log_trial_artifacts(child, cfg, results)


def _log_text(child: Tracker, name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_text(text)
        child.log_artifact(Path(tmp) / name)


def log_trial_artifacts(child: Tracker, cfg: ExperimentConfig, results: dict[str, FitResult]) -> None:
    """What only a trial that ran to its end has: the selected weights and the score figure.
    (A trial that ASHA stopped keeps its checkpoints in storage_path.)"""
    if not child.enabled:
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        features = model_file.features_of(cfg.data)
        for domain, result in results.items():  # the epoch that validation selected, as `hlp predict` reads it
            content = model_file.payload(result, cfg.model, cfg.train.window, cfg.eval.stride, features,
                                          cfg.data.normalize)
            model_file.save(str(out / f"model_{domain}.pt"), content)
            child.log_artifact(out / f"model_{domain}.pt", "checkpoint")
        shown = dict([item for r in results.values() for item in list(r.val_labels.items())[:2]][:SHOWN_VIDEOS])
        scores = {vid: s for r in results.values() for vid, s in r.val_scores.items()}
        if shown:
            score_timelines(shown, scores, out / "val_scores.png", f"{cfg.name}: validation scores vs labels")
            child.log_artifact(out / "val_scores.png")
