"""What a sweep keeps of a finished trial (hlp/sweep/keep.py): its checkpoint's files go, a note
of how it ended stays where Tune looks for the checkpoint. The whole path, from Tune's callback
to a resumed sweep, runs in tests/sweep/test_sweep_faults.py and test_sweep_cluster.py (S3)."""

from __future__ import annotations

import json

import pyarrow.fs

from hlp.sweep.keep import drop_checkpoints
from hlp.sweep.replicas import PROGRESS


def test_a_finished_trials_checkpoint_keeps_only_how_it_ended(tmp_path):
    trial = tmp_path / "trial_abc_1"
    checkpoint = trial / "checkpoint_000003"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state_0.pt").write_bytes(b"x" * 4096)
    (checkpoint / "state_1.pt").write_bytes(b"y" * 1024)
    (checkpoint / PROGRESS).write_text(json.dumps({"epoch": 3, "objective": {}}))
    (trial / "result.json").write_text("{}")  # Tune's own files of the trial stay

    freed = drop_checkpoints(pyarrow.fs.LocalFileSystem(), str(trial), {"val_map": 0.5, "stopped_early": False})

    assert freed >= 4096 + 1024
    assert sorted(p.name for p in checkpoint.iterdir()) == [PROGRESS]
    assert json.loads((checkpoint / PROGRESS).read_text()) == {"ended": {"val_map": 0.5, "stopped_early": False}}
    assert (trial / "result.json").exists()


def test_a_trial_without_checkpoints_frees_nothing(tmp_path):
    assert drop_checkpoints(pyarrow.fs.LocalFileSystem(), str(tmp_path / "missing"), {}) == 0
