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
    # What a person watching sees without -v (issue 23): hlp's lines only; the trial's epochs,
    # said by the driver from Tune's results; each final's epochs labelled with its run; and
    # nothing after the closing table (stdout) and its `wrote` line (stderr).
    said = result.stdout + result.stderr
    for chatter in ("ExperimentalWarning", "A new study created", "Trial status", "Configuration for experiment",
                    "View detailed results", "unresolved search space", "across cluster]", "core_worker.cc", "\x1b["):
        assert chatter not in said, (chatter, said[-3000:])
    assert f"trial hpcl-{trial.data.tags['trial_id']} | epoch 1/1 | loss " in result.stderr, result.stderr[-3000:]
    finals = [line for line in result.stderr.splitlines() if "seed 0 | epoch " in line]
    assert {line.split(" ", 1)[0] for line in finals} == {"[best]", "[defaults]"}, finals
    assert all(f"[{role}] seed 0 | epoch 1/1 | loss " in result.stderr for role in ("best", "defaults")), finals
    assert result.stdout.rstrip().splitlines()[-1].startswith(("└", "+")), result.stdout[-1000:]
    assert result.stderr.rstrip().splitlines()[-1].startswith("wrote "), result.stderr[-1000:]
