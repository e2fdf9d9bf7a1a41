"""What a sweep keeps of a finished trial (hlp/sweep/keep.py): its checkpoint's files go, a note
of how it ended stays where Tune looks for the checkpoint; a trial that Tune's saved state does
not know leaves nothing. The whole path, from Tune's callback to a resumed sweep, runs in
tests/sweep/test_sweep_faults.py, test_sweep_lost_trial.py and test_sweep_cluster.py (S3)."""

from __future__ import annotations

import json

import pyarrow.fs

import s3fs

from hlp.sweep.keep import drop_checkpoints, forget_lost_trials
from hlp.sweep.replicas import PROGRESS
from hlp.tracking import Tracker


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


def test_trials_that_tune_never_saved_leave_no_run_and_no_checkpoint_on_s3(tmp_path, s3_endpoint):
    """Killed before Tune saved any state: --resume starts the search afresh, so every trial of
    the old try is lost. Their runs go (soft-deleted), their Tune folders and Train runs too; the
    parent's other children (final runs) and other sweeps' folders stay."""
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    if not fs.exists("hlp-lost"):
        fs.mkdir("hlp-lost")
    fs.pipe_file("hlp-lost/runs/hpcl-sweep/trial_aaaa1111_1_loss_x=1/checkpoint_000000/state_0.pt", b"w" * 64)
    fs.pipe_file("hlp-lost/runs/hpcl-aaaa1111/checkpoint_000000/checkpoint.pt", b"w" * 64)  # its Train run
    fs.pipe_file("hlp-lost/runs/hpcl-best-seed0/results.pt", b"r")  # a final run's: not a trial's
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with Tracker(uri, "lost", "sweep-hpcl", {}) as parent:
        for trial_id in ("aaaa1111", "bbbb2222"):
            Tracker(uri, "lost", f"hpcl-{trial_id}", {"trial_id": trial_id}, parent_run_id=parent.run_id).finish("KILLED")
        final = Tracker(uri, "lost", "hpcl-best", {"role": "best"}, parent_run_id=parent.run_id)
        said: list[str] = []

        lost = forget_lost_trials("s3://hlp-lost/runs/hpcl-sweep", "hpcl", "s3://hlp-lost/runs", parent, said.append)

        assert lost == {"aaaa1111", "bbbb2222"}
        fs.invalidate_cache()
        assert fs.find("hlp-lost/runs") == ["hlp-lost/runs/hpcl-best-seed0/results.pt"]
        active = parent.client.search_runs([parent.client.get_experiment_by_name("lost").experiment_id])
        assert {r.info.run_id for r in active} == {parent.run_id, final.run_id}
        assert len(said) == 2 and all("Tune cannot resume it and samples another in its place" in line for line in said)
        assert "mlflow runs restore --run-id" in said[1]
        final.finish()
