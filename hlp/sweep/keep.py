"""What a sweep keeps of a trial once the trial is over: its metrics, never its checkpoint.

A checkpoint is read only to resume its trial, so it lives while the trial can still resume:
while it runs, after an error (`--resume` retries errored trials, Tune's resume_errored) and
after Ctrl-C. A trial that finished, or that ASHA stopped, never resumes (the finals retrain),
so its checkpoint's files go as soon as Tune says it is over: a full-size trial's are ~2 GB
(issue 22: 24 trials kept 50 GB). One small file takes their place and says how the trial
ended: Tune saves its own state every few seconds, so a sweep killed in between resumes from
a state in which that trial still runs, and the trial then reports its end again instead of
finding its checkpoint gone (`hlp.sweep.replicas.ended`).
"""

from __future__ import annotations

import json

import pyarrow.fs
from ray.tune import Callback

from hlp.storage import remove
from hlp.sweep.replicas import PROGRESS


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
        ended = {"val_map": last.get("val_map", float("nan")), "stopped_early": not last.get("final")}
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
