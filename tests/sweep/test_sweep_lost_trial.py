"""A sweep driver killed just after its next trial opened its MLflow run, before Tune saved a
state that names the trial (Tune saves it every few seconds; the fault test's kill landed in that
window 1 time in 5): Tune samples another trial in its place on --resume, and the lost one's
run and checkpoints must not stay beside it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from ray_processes import isolated_env as _env
from ray_processes import kill_processes as _kill_processes
from support import mlflow_runs, sweep_command

pytestmark = pytest.mark.slow


def _trial_runs(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from tags where key = 'trial_id'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_trial_started_after_the_last_saved_state_is_not_duplicated(tmp_path, synth_root, ray_tmpdir):
    base = sweep_command(synth_root, "search.num_samples=2", "train.epochs=2", "train.checkpoint_every=1",
                         "search.grace_period=2", "search.max_concurrent=1")
    db = tmp_path / "mlflow.db"
    driver = subprocess.Popen(base, cwd=tmp_path, env=_env(ray_tmpdir), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while _trial_runs(db) < 2:  # kill the moment the second trial opens its run: before its first report
        assert driver.poll() is None and time.time() < deadline, "the sweep ended before the fault"
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    _kill_processes(ray_tmpdir, signal.SIGKILL)

    result = subprocess.run([*base, "--resume"], cwd=tmp_path, env=_env(ray_tmpdir), capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    said = " ".join(result.stderr.split())
    assert "started after the sweep's last saved state: Tune cannot resume it and samples another in its place; " \
           "its run" in said, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "sweep_summary.json").read_text())
    assert summary["trials"] == 2
    trials = [r for r in mlflow_runs(db, "hpcl-sweep") if "trial_id" in r.data.tags]
    assert len(trials) == 2 and {r.info.status for r in trials} == {"FINISHED"}, \
        [(r.data.tags["trial_id"], r.info.status) for r in trials]
    notes = list((tmp_path / "ray_results" / "hpcl-sweep").glob("trial_*/checkpoint_*/*"))
    assert {p.name for p in notes} == {"trial.json"}, notes
