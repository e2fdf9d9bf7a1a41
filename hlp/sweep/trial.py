"""One sweep trial: Tune's function trainable, which trains the trial's replicas and records it in MLflow.

A trial's replicas, the (seed, fold) pairs of `search.seeds` and eval.selection, each fit in one
process: they run as Ray tasks on pooled worker processes (`replicas`), and the trial reports
their mean validation mAP per epoch to Tune, which Optuna and ASHA read. Only a trial whose one
replica spans several workers (resources.workers > 1: DDP) builds a TorchTrainer, whose
`TuneReportCallback` forwards rank 0's reports. The child run gets what a person comparing
trials wants to open: the resolved YAML, the curves, and predicted scores against labels on
validation videos; never weights (the final runs retrain and log their models). Trials never
score the test split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ray.tune import Callback

from hlp.cluster import to_stderr
from hlp.config import ExperimentConfig, config_from_dict, flatten, set_dotted, to_yaml
from hlp.data.datasets import load_dataset_for
from hlp.plots import score_timelines
from hlp.sweep.replicas import NOTE, ended, run_replicas, selected
from hlp.tracking import Tracker, run_tags
from hlp.train.progress import EpochLine
from hlp.train.runs import mean_loss, replicas_of, run_inputs, trial_replicas

SHOWN_VIDEOS = 6  # validation videos in the trial's score figure


def trial(params: dict, base: dict, parent_run_id: str | None, sweep_name: str, shared: list | None = None,
          inputs: list | None = None) -> None:
    """Tune's function trainable for one sampled configuration. `shared` holds the sweep's
    dataset in the object store (None where the space changes what is read)."""
    import ray
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    done = ended()
    if done is not None:  # it ended before the sweep was interrupted: say so again, train nothing
        tune.report({"val_map": done["val_map"],
                     **({"stopped_at_epoch": done.get("epoch")} if done["stopped_early"] else {"final": 1})})
        return
    cfg = config_from_dict(set_dotted(base, params), f"trial {trial_id}")
    tags = {"sweep": sweep_name, "trial_id": trial_id, "node_id": ray.get_runtime_context().get_node_id(),
            **run_tags(cfg)}
    name = f"{sweep_name}-{trial_id}"  # no timestamp: a retried or resumed trial finds its checkpoints
    child = Tracker(cfg.tracking.uri, cfg.tracking.experiment, name, tags,
                    cfg.tracking.enabled, parent_run_id=parent_run_id, reuse_tag=("trial_id", trial_id))
    dataset = (shared or [None])[0]
    with child:  # FINISHED; FAILED on an error; KILLED when the trial's process is told to exit
        child.log_params(flatten(cfg))
        _log_text(child, "config.yaml", to_yaml(cfg))  # first, so a trial that ASHA stops still has it
        child.log_inputs(inputs if inputs is not None else  # the driver's, unless this trial's params move the data
                         trial_inputs(cfg, ray.get(dataset) if dataset is not None else load_dataset_for(cfg.data)))
        if spans_workers(cfg):
            from hlp.train.ray_train import fit_with_ray  # Ray Train: only this kind of trial imports it

            fits = fit_with_ray(cfg, cfg.search.seeds[0], child.run_id, run_name=name, callbacks=[tune_report()],
                                score_test=False, dataset=dataset, log=_print, epoch_lines=False)  # EpochLines says them
            results = {d: selected(r) for d, r in fits.items()}
        else:
            results = run_replicas(cfg, replicas_of(cfg), child, dataset, name, _print)
        child.log_metrics({f"val_map.{d}": r["val_map"] for d, r in results.items()})
        log_trial_artifacts(child, cfg, results)


def trial_inputs(cfg: ExperimentConfig, data) -> list:
    """What a trial reads, as MLflow dataset inputs: training and validation (trials never read test)."""
    return run_inputs(cfg, data, cfg.search.seeds[:1] if spans_workers(cfg) else cfg.search.seeds,
                      ("training", "validation"))


def moves_data(space) -> bool:
    """Whether a sampled key can change what a trial reads or how it splits it (then each trial
    describes its own data; else the driver describes it once for every trial)."""
    return any(key.split(".")[0] in ("data", "eval", "search") for key in space)


def spans_workers(cfg: ExperimentConfig) -> bool:
    """Whether the trial's one replica trains across several workers (DDP), hence on a TorchTrainer."""
    return trial_replicas(cfg) is None and cfg.resources.workers > 1


def tune_report():
    """Ray's callback that forwards a TorchTrainer's reports to Tune."""
    from ray.tune.integration.ray_train import TuneReportCallback

    return TuneReportCallback()


def _print(line: str) -> None:
    print(line, flush=True)  # the trial's own stdout, which Ray forwards to the sweep's terminal under --verbose


class EpochLines(Callback):
    """The sweep's driver says each trial's epochs (`trial hpcl-1a2b | epoch 3/8 | ...`), and what a
    trial says with a report (`NOTE`: its replicas restarted), from the results Tune hands it:
    in order, as they come, and all of them before the search returns. A trial's own prints would
    reach the terminal late and deduplicated through Ray's log monitor, or not at all (hlp.cluster).
    The elapsed time counts from the trial's start as the driver sees it."""

    def __init__(self, sweep_name: str, epochs: int, log=to_stderr) -> None:
        self.sweep_name, self.epochs, self._log = sweep_name, epochs, log
        self._lines: dict[str, EpochLine] = {}

    def _line(self, trial) -> EpochLine:
        if trial.trial_id not in self._lines:
            self._lines[trial.trial_id] = EpochLine(f"trial {self.sweep_name}-{trial.trial_id}", self.epochs)
        return self._lines[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._lines.pop(trial.trial_id, None)  # a restarted trial's clock starts again
        self._line(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        line = self._line(trial)
        if result.get(NOTE):
            self._log(f"{line.label}: {result[NOTE]}")
        epoch = result.get("epoch")  # the final report has none
        if epoch is not None:
            self._log(line(int(epoch), mean_loss(result), result.get("val_map")))

    # Tune pickles its callbacks with the sweep's state: the log may be a closure over the CLI's
    # console, and a resumed sweep says its lines on stderr.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_log", "_lines")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._log, self._lines = to_stderr, {}


def _log_text(child: Tracker, name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_text(text)
        child.log_artifact(Path(tmp) / name)


def log_trial_artifacts(child: Tracker, cfg: ExperimentConfig, results: dict[str, dict]) -> None:
    """What only a trial that ran to its end has: its validation scores against labels."""
    if not child.enabled:
        return
    shown = dict([item for r in results.values() for item in list(r["val_labels"].items())[:2]][:SHOWN_VIDEOS])
    scores = {vid: s for r in results.values() for vid, s in r["val_scores"].items()}
    if shown:
        with tempfile.TemporaryDirectory() as tmp:
            score_timelines(shown, scores, Path(tmp) / "val_scores.png", f"{cfg.name}: validation scores vs labels")
            child.log_artifact(Path(tmp) / "val_scores.png")
