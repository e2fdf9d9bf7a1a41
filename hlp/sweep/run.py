"""`hlp sweep`: search the experiment's `search.space` with Ray Tune + Optuna, then report.

Each trial is Tune's function trainable (`trial`): its replicas, one per (seed, fold) of
`search.seeds`, run as Ray tasks side by side and every domain trains in lockstep; the trial
reports the replicas' mean validation mAP per epoch: Optuna's seeded TPE proposes from it and
ASHA stops on it. Trial processes are reused from one trial to the next (Tune's reuse_actors),
as are the replicas' worker processes, so a trial costs its training, not process starts.
Trials never score the test split. A trial's checkpoint lives while the trial can still
resume (while it runs, and after an error, which --resume retries) and goes when it finishes
or ASHA stops it.
At the end the best configuration and the experiment's own defaults both train on every seed
and are scored on the test split once, for `sweep_summary.json`, the printed table and the
verdict (the paired difference with its bootstrap interval over test videos). Trials run at most
`search.max_concurrent` at a time, and never more than the cluster can place (`concurrency`).

Ctrl-C (or SIGTERM) stops the sweep where it is: no final run starts, every run still open ends
KILLED, and `--resume` continues from Tune's saved state.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import ray
from optuna.samplers import TPESampler
from ray import tune
from ray.tune.error import TuneError
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from hlp.cluster import ensure_ray, verbose
from hlp.config import ExperimentConfig, config_from_dict, flatten, set_dotted, to_yaml
from hlp.data.datasets import Dataset, changes_read
from hlp.evaluate.evaluation import video_aps
from hlp.evaluate.paired import HOLDS, REVERSED, TOO_FEW, UNRESOLVED, compare
from hlp.interrupts import ray_call
from hlp.placement import PlacementError, alive_nodes, check_placeable, runs_at_once, worker_resources
from hlp.storage import kept_lines, ray_storage
from hlp.sweep.concurrency import ClusterLimiter, StopWhenUnplaceable, placement_error, trial_workers
from hlp.sweep.keep import DropFinishedTrials, forget_lost_trials
from hlp.sweep.replicas import JUDGED
from hlp.sweep.figures import optuna_figures
from hlp.sweep.space import check_space, tune_space
from hlp.sweep.trial import EpochLines, moves_data, trial, trial_inputs
from hlp.tracking import Tracker, local_store, run_tags
from hlp.train.progress import labelled
from hlp.train.ray_train import run_key
from hlp.train.run import preflight
from hlp.train.runs import run_inputs

# A trial's own process reserves no CPU: its replica tasks ask for the CPUs (and GPUs) they
# train on, and it only pairs their epochs (a 2-CPU machine must hold a 2-seed trial). Tune
# refuses an empty request, so the trial asks for a token of memory instead.
DRIVER_MEMORY = 64 * 2**20  # bytes


def run_sweep(cfg: ExperimentConfig, output: Path, resume: bool,
              train: Callable[[ExperimentConfig, Path, dict[str, str]], dict],
              log: Callable[[str], None] = print) -> dict:
    """Search, then train the winner and the defaults on every seed and score them on test once."""
    check_space(cfg)
    dataset, _, _ = preflight(cfg, log)
    output.mkdir(parents=True, exist_ok=True)
    state_path = output / "sweep_state.json"
    state = json.loads(state_path.read_text()) if resume and state_path.exists() else {}
    parent = Tracker(cfg.tracking.uri, cfg.tracking.experiment, f"sweep-{cfg.name}", {"sweep": cfg.name, **run_tags(cfg)},
                     cfg.tracking.enabled, reuse_run_id=state.get("parent_run_id"))
    state_path.write_text(json.dumps({"parent_run_id": parent.run_id}))
    with parent:  # FINISHED, FAILED, or KILLED on an interrupt
        try:
            parent.log_params(flatten(cfg))
            parent.log_inputs(run_inputs(cfg, dataset, cfg.search.seeds))  # its trials' data, and the finals' test
            (output / "config.yaml").write_text(to_yaml(cfg))
            ensure_ray(cfg.resources.address)
            check_placeable(cfg.resources, *trial_workers(cfg), log)
            if resume:
                forget_lost_trials(sweep_path(cfg), cfg.name, cfg.resources.storage_path, parent, log)
            grid = search(cfg, parent.run_id, resume, log, dataset)
            summary = _report(cfg, grid, output, parent, train, log, dataset)
        except BaseException:
            parent.close_children()  # trials and final runs still running end KILLED with the sweep
            raise
    for line in kept_lines({"the sweep's state (Tune; --resume reads it)": sweep_path(cfg),
                            "the sweep's outputs": str(output), **local_store(cfg.tracking.uri, cfg.tracking.experiment)}):
        log(line)
    return summary


def sweep_path(cfg: ExperimentConfig) -> str:
    """Where Tune keeps the sweep's state and its trials' checkpoints (resources.storage_path)."""
    return f"{cfg.resources.storage_path.rstrip('/')}/{cfg.name}-sweep"


def search(cfg: ExperimentConfig, parent_run_id: str | None, resume: bool = False,
           log: Callable[[str], None] = print, dataset: Dataset | None = None):
    """The Tune part alone (Ray already initialised): trials on validation mAP; a ResultGrid.
    `dataset`, when given, goes into the object store once and every trial's workers read it there,
    unless the space searches a key that changes what is read (then each trial reads its own).

    Ctrl-C raises out of the search (`hlp.interrupts`). Tune's own handler, which would end the
    search as if it were complete (the sweep would go on to its final runs), stays off where the
    search is called in the main thread without the CLI."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    _quiet_optuna()
    # Keeping one checkpoint per trial makes Tune save its state at each checkpoint, and warn that
    # it does when epochs are short; that save is what keeps a resumed sweep from reading a
    # deleted checkpoint, so it stays, and the warning goes.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    storage_path, filesystem = ray_storage(cfg.resources.storage_path)
    share = dataset is not None and not changes_read(cfg.search.space)
    shared = [ray.put(dataset) if share else None]  # in a list: Tune passes the reference itself
    # The trials' dataset inputs, hashed once here rather than in every trial (0.3 s a trial on YouTube).
    inputs = trial_inputs(cfg, dataset) if dataset is not None and not moves_data(cfg.search.space) else None
    trainable = tune.with_parameters(trial, base=cfg.model_dump(), parent_run_id=parent_run_id, sweep_name=cfg.name,
                                     shared=shared, inputs=inputs)
    trainable = tune.with_resources(trainable, {"CPU": 0, "memory": DRIVER_MEMORY})
    path = f"{storage_path.rstrip('/')}/{cfg.name}-sweep"
    if resume and tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        log(f"resuming the sweep stored at {path}")
        return _fit(_as_verbose_as_asked(tune.Tuner.restore(path, trainable, resume_unfinished=True,
                                                            resume_errored=True, storage_filesystem=filesystem)))
    callbacks = [StopWhenUnplaceable(), DropFinishedTrials(cfg.name, cfg.resources.storage_path),
                 EpochLines(cfg.name, cfg.train.epochs, log)]  # the driver says every trial's epochs
    s = cfg.search
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric="val_map", mode="max", num_samples=s.num_samples,
            # search.max_concurrent, lowered to the trials the cluster can place
            # Optuna's own distributions: given Tune's, OptunaSearch converts them itself (the same
            # ones) and warns of "unresolved search space definitions", which reads as the user's mistake.
            search_alg=ClusterLimiter(OptunaSearch(space=OptunaSearch.convert_search_space(tune_space(s.space)),
                                                   metric="val_map", mode="max", sampler=TPESampler(seed=s.seed)),
                                      cfg, log),
            # Reports run from epoch 0 to `epochs`; ASHA judges all but the last (JUDGED) and passes
            # over the final one; it stops a trial that reaches max_t, so max_t lies beyond them all.
            scheduler=ASHAScheduler(time_attr=JUDGED, max_t=cfg.train.epochs + 2, grace_period=s.grace_period,
                                    reduction_factor=s.reduction_factor),
            # The next trial runs in the process of the last (every trial asks the same resources):
            # torch, hlp and the MLflow client stay imported (issue 22: a trial cost 15-21 s to start).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=f"{cfg.name}-sweep", storage_path=storage_path, storage_filesystem=filesystem,
                                  callbacks=callbacks, verbose=_tune_verbosity(),
                                  # One checkpoint per trial, the latest: all that a resumed trial reads.
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    return _fit(tuner)


def _tune_verbosity() -> int | None:
    """Tune's status and per-trial tables only with --verbose (its default then); otherwise the
    sweep says each trial's epochs (`EpochLines`) and its own lines. Silent, Tune 2.60's new
    output engine still prints the experiment's configuration box, "View detailed results here"
    and a TensorBoard command; its older engine at verbosity 0 prints nothing, so quiet uses that
    (RAY_AIR_NEW_OUTPUT, read at each fit; a user's own setting wins)."""
    if verbose():
        return None
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    return 0


def _as_verbose_as_asked(tuner: tune.Tuner) -> tune.Tuner:
    """A restored Tuner has the verbosity of the command that started the sweep (Tune pickled its
    RunConfig); this command's -v, or its absence, decides instead."""
    internal = getattr(tuner, "_local_tuner", None)  # None under Ray Client: the stored one stays
    if internal is not None:
        run_config = internal.get_run_config()
        run_config.verbose = _tune_verbosity()
        if run_config.verbose is None:  # RunConfig fills in Tune's default when it is built
            run_config.verbose = type(run_config)().verbose
    return tuner


def _quiet_optuna() -> None:
    """Without --verbose, none of Optuna's notes: its INFO lines ("A new study created in
    memory"), and the ExperimentalWarning of each figure (`optuna_figures`)."""
    if verbose():
        return
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _fit(tuner: tune.Tuner):
    """`tuner.fit()`, interruptible as the whole command is (`hlp.interrupts`); a trial's
    PlacementError that ended the search is raised as such."""
    try:
        return ray_call(tuner.fit)
    except TuneError as exc:
        unplaceable = placement_error(exc)
        if unplaceable is None:
            raise
        raise PlacementError(f"{unplaceable}; the sweep stopped there, and --resume retries that trial") from None


def _final_runs(cfg: ExperimentConfig, configs: dict[str, ExperimentConfig], output: Path, parent_run_id: str | None,
                train) -> dict[str, dict]:
    """The winner and the defaults on every seed, as child runs of the sweep. They train side by
    side when the cluster holds both (each is its own TorchTrainer; Train V2 runs them from
    threads of this driver), so the sweep's last step takes one training's time instead of two."""
    res = cfg.resources
    # Identical configs share one Ray run name: then the second must resume the first, not race it.
    distinct = len({run_key(c, 0) for c in configs.values()}) == len(configs)
    side_by_side = distinct and runs_at_once(worker_resources(res), res.workers, alive_nodes()) >= len(configs)
    nested = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
    # Each run's lines say which it is ("[best] seed 0 | epoch 3/8 | ..."): they may interleave.
    calls = {role: labelled(role, partial(train, c, output / role, {"sweep": cfg.name, "role": role,
                                                                    "run_name": f"{cfg.name}-{role}",
                                                                    "run_key": f"{parent_run_id}/{role}", **nested}))
             for role, c in configs.items()}
    groups = [list(calls)] if side_by_side else [[role] for role in calls]
    results: dict[str, dict] = {}
    for group in groups:
        results.update(_side_by_side({role: calls[role] for role in group}))
    return results


def _side_by_side(calls: dict[str, Callable[[], dict]]) -> dict[str, dict]:
    """Run the calls in daemon threads and return their results (or raise the first error). Daemon
    threads, so that an interrupted sweep exits at once, its runs closed as KILLED, instead of
    waiting for trainings nobody will read (a pool's threads are joined at exit)."""
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def run(role: str) -> None:
        try:
            results[role] = calls[role]()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(role,), daemon=True, name=f"final-{role}") for role in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _report(cfg, grid, output: Path, parent: Tracker, train, log, dataset: Dataset) -> dict:
    # A trial that ran to its end made the final report; ASHA's stopped trials did not.
    parent.end_stopped_trials({r.metrics["trial_id"]: r.metrics.get("epoch", r.metrics.get("stopped_at_epoch")) for r in grid
                               if r.error is None and not r.metrics.get("final") and "trial_id" in r.metrics})
    best = grid.get_best_result(metric="val_map", mode="max", scope="all")
    params = {k: best.config[k] for k in cfg.search.space}
    log(f"best of {len(grid)} trials: val_map={best.metrics.get('val_map'):.4f} {params}")
    best_cfg = config_from_dict(set_dotted(cfg.model_dump(), params), "best trial")
    runs = _final_runs(cfg, {"best": best_cfg, "defaults": cfg}, output, parent.run_id, train)
    defaults = flatten(cfg)
    summary = {
        "sweep": cfg.name, "trials": len(grid), "best_params": params,
        "best_trial_val_map": best.metrics.get("val_map"),
        "defaults_params": {k: defaults[k] for k in cfg.search.space},
        **{name: {"mean_val_map": m["mean_val_map"], "mean_test_map": m["mean_test_map"],
                  "domains": {d: {k: v[k] for k in ("val_map", "test_map", "test_map_std")}
                              for d, v in m["domains"].items()}} for name, m in runs.items()},
    }
    summary["verdict"] = verdict_of(output, cfg.train.seeds, dataset, cfg.search.bootstrap)
    (output / "sweep_summary.json").write_text(json.dumps(summary, indent=2))
    v = summary["verdict"]
    log(f"verdict: best - defaults = {v['diff']:+.3f} test mAP, 95 % CI [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] "
        f"over test videos: {v['says']}")
    parent.set_tags({"verdict": v["says"]})
    parent.log_metrics({"verdict.diff": v["diff"], "verdict.ci95_low": v["ci95"][0], "verdict.ci95_high": v["ci95"][1],
                        **{f"verdict.diff.{d}": x["diff"] for d, x in v["domains"].items()}})
    parent.log_metrics({f"test_map.{d}": v["test_map"] for d, v in summary["best"]["domains"].items()})
    parent.log_metrics({"best_val_map": summary["best"]["mean_val_map"], "best_test_map": summary["best"]["mean_test_map"]})
    for figure in optuna_figures(grid, cfg.search.space, output):
        parent.log_artifact(figure)
    parent.log_artifact(output / "sweep_summary.json")
    return summary


def per_video_ap(scores_file: Path, dataset: Dataset) -> dict[str, dict[str, float]]:
    """domain -> {video id: AP} of one seed's test scores (`scores_test_seed<N>.json`)."""
    scores = json.loads(scores_file.read_text())
    by_domain: dict[str, list] = {}
    for vid in scores:
        by_domain.setdefault(dataset.videos[vid].domain, []).append(dataset.videos[vid])
    return {d: video_aps(videos, scores) for d, videos in by_domain.items()}


def verdict_of(output: Path, seeds: list[int], dataset: Dataset, resamples: int) -> dict:
    """The winner against the defaults on the test split, paired by seed and by video: the mean
    difference per domain and overall, its 95 % bootstrap interval over test videos, and whether
    the winner beats the defaults (the interval above 0)."""
    per_role = {}
    for role in ("best", "defaults"):
        per_seed = {s: per_video_ap(output / role / f"scores_test_seed{s}.json", dataset) for s in seeds}
        per_role[role] = {d: {s: per_seed[s][d] for s in seeds if d in per_seed[s]}
                          for d in {d for aps in per_seed.values() for d in aps}}
    result = compare(per_role["best"], per_role["defaults"], resamples)
    says = {HOLDS: "the best configuration beats the defaults", REVERSED: "the defaults beat the best configuration",
            UNRESOLVED: "no resolved difference: the interval holds 0",
            TOO_FEW: "too few test videos to resolve a difference"}
    return {**result, "says": says.get(result["verdict"], result["verdict"]), "beats_defaults": result["verdict"] == HOLDS}
