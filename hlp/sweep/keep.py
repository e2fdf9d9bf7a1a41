"""What a sweep keeps of a trial once the trial is over: its metrics, never its checkpoint.

A checkpoint is read only to resume its trial, so it lives while the trial can still resume:
while it runs, after an error (`--resume` retries errored trials, Tune's resume_errored) and
after Ctrl-C. A trial that finished, or that ASHA stopped, never resumes (the finals retrain),
so its checkpoint's files go as soon as Tune says it is over: a full-size trial's are ~2 GB
(issue 22: 24 trials kept 50 GB). One small file takes their place and says how the trial
ended: Tune saves its own state every few seconds, so a sweep killed in between resumes from
a state in which that trial still runs, and the trial then reports its end again instead of
finding its checkpoint gone (`hlp.sweep.replicas.ended`).

The same window loses a trial that started after the last save: Tune's resumed state does not
know it, so Tune samples another in its place. `forget_lost_trials` deletes what the lost one
left, its MLflow run and its checkpoints, so that the finished sweep holds each trial once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow.fs
from ray import tune
from ray.tune import Callback, ExperimentAnalysis

from hlp.storage import filesystem, ray_storage, remove
from hlp.sweep.replicas import PROGRESS
from hlp.tracking import Tracker


class DropFinishedTrials(Callback):
    """A Tune callback of the sweep's driver (an errored trial keeps its checkpoint for --resume).
    `sweep_name` names the trials' runs; a trial on a
    TorchTrainer (resources.workers > 1) keeps its checkpoints in a Train run of that name under
    `storage_path`, the others in Tune's trial folder."""

    def __init__(self, sweep_name: str, storage_path: str) -> None:
        self.sweep_name, self.storage_path = sweep_name, storage_path.rstrip("/")  # resources.storage_path

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        name = f"{self.sweep_name}-{trial.trial_id}"
        last = trial.last_result or {}
        ended = {"val_map": last.get("val_map", float("nan")), "stopped_early": not last.get("final"),
                 "epoch": last.get("epoch", last.get("stopped_at_epoch"))}
        drop_checkpoints(trial.storage.storage_filesystem, trial.storage.trial_fs_path, ended)
        remove(f"{self.storage_path}/{name}")


def drop_checkpoints(filesystem: pyarrow.fs.FileSystem, trial_folder: str, ended: dict) -> int:
    """Empty the `checkpoint_*` folders of a trial's storage but for a note of how it `ended`;
    the bytes freed."""
    freed = 0
    for info in filesystem.get_file_info(pyarrow.fs.FileSelector(trial_folder, allow_not_found=True)):
        if info.type != pyarrow.fs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
            continue
        for file in filesystem.get_file_info(pyarrow.fs.FileSelector(info.path, recursive=True)):
            if file.type == pyarrow.fs.FileType.File:
                freed += file.size
                filesystem.delete_file(file.path)
        with filesystem.open_output_stream(f"{info.path}/{PROGRESS}") as out:
            out.write(json.dumps({"ended": ended}).encode())
    return freed


def forget_lost_trials(sweep_folder: str, sweep_name: str, storage_path: str, parent: Tracker,
                       log: Callable[[str], None]) -> set[str]:
    """Before --resume: delete the runs and checkpoints of trials that Tune's saved state in
    `sweep_folder` does not name (none, if Tune saved nothing yet); their ids. Tune will never
    resume them, and it samples new trials in their place."""
    path, pyarrow_fs = ray_storage(sweep_folder)
    saved = tune.Tuner.can_restore(path, storage_filesystem=pyarrow_fs)
    known = {t.trial_id for t in ExperimentAnalysis(path, storage_filesystem=pyarrow_fs).trials} if saved else set()
    runs = parent.delete_children("trial_id", keep=known)
    fs, inner = filesystem(sweep_folder)
    folders = {f.rstrip("/").rsplit("/", 1)[-1].split("_")[1]: f for f in (fs.ls(inner) if fs.exists(inner) else [])
               if f.rstrip("/").rsplit("/", 1)[-1].startswith("trial_")}  # trial_<id>_<n>_<params>
    lost = (set(runs) | set(folders)) - known
    for trial_id in sorted(lost):
        if trial_id in folders:
            fs.rm(folders[trial_id], recursive=True)
        remove(f"{storage_path.rstrip('/')}/{sweep_name}-{trial_id}")  # its Train run, if it had one
        run = f"; its run {runs[trial_id]} is deleted (`mlflow runs restore --run-id {runs[trial_id]}` " \
              "brings it back)" if trial_id in runs else ""
        log(f"trial {trial_id} started after the sweep's last saved state: Tune cannot resume it and samples "
            f"another in its place{run}")
    return lost
