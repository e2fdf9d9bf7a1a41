"""A sweep whose trial's one replica spans several workers (resources.workers > 1: DDP) trains
it on a TorchTrainer, as `hlp train` does, and keeps nothing of it once the trial ends (the
other trials' replicas are Ray tasks: test_sweep_faults, test_sweep_cluster)."""

from __future__ import annotations

import subprocess

import pytest
from ray_processes import isolated_env
from support import mlflow_runs, sweep_command

pytestmark = pytest.mark.slow


def test_a_trial_on_two_workers_trains_on_a_torchtrainer_and_keeps_no_checkpoint(tmp_path, synth_root, ray_tmpdir):
    result = subprocess.run(sweep_command(synth_root, "search.num_samples=1", "train.epochs=1", "search.grace_period=1",
                                          "resources.workers=2", "train.checkpoint_every=1"),
                            cwd=tmp_path, env=isolated_env(ray_tmpdir), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    [trial] = [r for r in mlflow_runs(tmp_path / "mlflow.db", "hpcl-sweep") if "trial_id" in r.data.tags]
    assert trial.info.status == "FINISHED" and "val_map.synth_a" in trial.data.metrics
    assert "seed0.val_map" in trial.data.metrics  # rank 0 of the TorchTrainer logged the curve
    assert "replicas" not in trial.data.tags  # not the replica tasks' path
    # The trial's Train run (its checkpoints) went when the trial ended; the sweep's state stays.
    storage = tmp_path / "ray_results"
    assert not (storage / f"hpcl-{trial.data.tags['trial_id']}").exists()
    assert (storage / "hpcl-sweep").is_dir()
