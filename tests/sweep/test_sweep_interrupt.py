"""`hlp sweep` stopped by Ctrl-C (a real SIGINT) or by a Ray that cannot start: no run is left
RUNNING, an interrupted search trains no final run, and `--resume` finishes the sweep with the
final runs nested under the sweep's parent run."""

from __future__ import annotations

import signal
import subprocess

import pytest
from ray_processes import isolated_env, wait_until
from support import epochs_logged, mlflow_runs, sweep_command


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_and_resume_finishes_it(tmp_path, synth_root, ray_tmpdir):
    """SIGINT while the trial trains: exit 130, the parent and the trial's run KILLED (and not
    `stopped_early`: that is ASHA's, issue 23), no final run trained. `--resume` then continues
    the trial into its run, which ends FINISHED, and trains the final runs under the parent."""
    command = sweep_command(synth_root, "search.num_samples=1", "train.epochs=12", "search.grace_period=12",
                     "train.checkpoint_every=1")
    db = tmp_path / "mlflow.db"
    job = subprocess.Popen(command, cwd=tmp_path, env=isolated_env(ray_tmpdir), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: epochs_logged(db) >= 2, job, timeout=420)
    job.send_signal(signal.SIGINT)
    stderr = job.communicate(timeout=180)[1]
    assert job.returncode == 130, stderr[-3000:]
    runs = mlflow_runs(db, "hpcl-sweep")
    [parent] = [r for r in runs if r.info.run_name == "sweep-hpcl"]
    [trial] = [r for r in runs if "trial_id" in r.data.tags]
    assert len(runs) == 2, [(r.info.run_name, r.data.tags.get("role")) for r in runs]  # no final run
    assert (parent.info.status, trial.info.status) == ("KILLED", "KILLED")
    assert "stopped_early" not in trial.data.tags
    assert not (tmp_path / "out" / "best").exists() and not (tmp_path / "out" / "sweep_summary.json").exists()

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, env=isolated_env(ray_tmpdir),
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the sweep" in resumed.stderr
    runs = {r.info.run_id: r for r in mlflow_runs(db, "hpcl-sweep")}
    assert [r.info.status for r in runs.values()] == ["FINISHED"] * 4
    again = runs[trial.info.run_id]  # the same run, continued
    assert "stopped_early" not in again.data.tags and "val_map.synth_a" in again.data.metrics
    finals = {r.data.tags["role"]: r for r in runs.values() if "role" in r.data.tags}
    assert set(finals) == {"best", "defaults"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in finals.values())
    assert parent.info.run_id in runs and "verdict" in runs[parent.info.run_id].data.tags


def test_a_sweep_run_ends_failed_when_ray_cannot_start(tmp_path, synth_root):
    """The parent run exists before Ray starts; a Ray that cannot start (a typo in its address)
    must not leave it RUNNING."""
    result = subprocess.run(sweep_command(synth_root, "resources.address=127.0.0.1:abc"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "port" in result.stderr, result.stderr[-3000:]
    assert [r.info.status for r in mlflow_runs(tmp_path / "mlflow.db", "hpcl-sweep")] == ["FAILED"]
