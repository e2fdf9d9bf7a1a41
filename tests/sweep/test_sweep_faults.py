"""Fault tests for `hlp sweep`: a killed training worker and a killed sweep driver, in one sweep.

Each sweep runs its own local Ray cluster under a private RAY_TMPDIR, so the test can find and
kill exactly that cluster's processes (and clean them up) without touching any other Ray.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray._private.utils import get_num_cpus
from ray_processes import isolated_env as _env
from ray_processes import kill_processes as _kill_processes
from ray_processes import wait_until as _wait_until
from support import EXPERIMENTS, mlflow_runs, sweep_command

from hlp.config import load_config

pytestmark = pytest.mark.slow


def _registered_checkpoint(storage: Path) -> str | None:
    """`hpcl-<trial id>` of a trial whose checkpoint of its second report or a later one Tune has
    stored (a trial keeps one, the latest; a report still on its way from a killed replica is
    lost, so wait for one in storage)."""
    for progress in storage.glob("hpcl-sweep/trial_*/checkpoint_*/trial.json"):
        try:
            registered = json.loads(progress.read_text())["epoch"] >= 1
        except (OSError, ValueError, KeyError):
            continue  # being written
        if registered:
            return f"hpcl-{progress.parent.parent.name.split('_')[1]}"
    return None


def _children(db: Path) -> tuple[list, list]:
    """The parent run, and its trials' runs (its other children are the final runs)."""
    runs = mlflow_runs(db, "hpcl-sweep")
    parents = [r for r in runs if r.info.run_name == "sweep-hpcl"]
    assert len(parents) == 1
    return parents, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
                     and "trial_id" in r.data.tags]


def test_a_killed_worker_and_a_killed_sweep_both_resume_without_duplicates(tmp_path, synth_root, ray_tmpdir):
    """Two faults in one sweep of two trials (one sweep, not two: the suite's 20 minutes).
    SIGKILL the process that trains the first trial's replica once it has checkpointed: the trial
    restarts it from the checkpoint (resources.max_failures), the trial finishes and its child run
    records the resume. Then kill
    the sweep driver (and its cluster) after that trial: --resume completes the rest, and the
    finished sweep has everything a sweep promises (summary, parent, children), nothing twice.

    The same sweep asks max_concurrent 2 of 1-worker trials whose worker takes every CPU of the
    job's own Ray (issue 15): the trials run one at a time, and the sweep says why."""
    cpus = get_num_cpus()  # what the job's own Ray gets: 2 on CI
    base = sweep_command(synth_root, "search.num_samples=2", "train.epochs=12",
                  "train.checkpoint_every=1", "search.grace_period=12", "search.max_concurrent=2",
                  f"resources.cpus_per_worker={cpus}")
    driver = subprocess.Popen(base, cwd=tmp_path, env=_env(ray_tmpdir), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_until(lambda: _registered_checkpoint(tmp_path / "ray_results") is not None, driver)
    killed_run = _registered_checkpoint(tmp_path / "ray_results")  # "hpcl-<trial id>": that trial's run name
    assert _kill_processes(ray_tmpdir, signal.SIGKILL, title="ray::replica_epochs") == 1
    db = tmp_path / "mlflow.db"
    _wait_until(lambda: db.exists() and _finished_children(db) >= 1, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    _kill_processes(ray_tmpdir, signal.SIGKILL)  # a dead driver's cluster: as after a crashed machine
    assert not (tmp_path / "out" / "sweep_summary.json").exists()

    result = subprocess.run([*base, "--resume"], cwd=tmp_path, env=_env(ray_tmpdir), capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming the sweep" in result.stderr
    assert (f"search.max_concurrent 2 -> 1: the cluster has {cpus:g} CPUs (1 node) and a trial needs {cpus:g} "
            f"(1 worker x {cpus:g} CPU)") in " ".join(result.stderr.split())
    assert "WorkerGroupStartupTimeoutError" not in result.stderr
    summary = json.loads((tmp_path / "out" / "sweep_summary.json").read_text())
    assert summary["trials"] == 2
    assert set(summary["best_params"]) == set(load_config(EXPERIMENTS / "hpcl.yaml").search.space)
    assert summary["defaults_params"]["loss.lambda_hpcl"] == 0.3
    for name in ("best", "defaults"):
        assert set(summary[name]["domains"]) == {"synth_a", "synth_b"}
        assert all(0.0 <= d["test_map"] <= 1.0 for d in summary[name]["domains"].values())
    [parent], children = _children(db)
    assert len(children) == 2 and len({c.data.tags["trial_id"] for c in children}) == 2
    assert all(c.info.status == "FINISHED" for c in children)
    first, second = sorted(children, key=lambda c: c.info.start_time)
    assert first.info.end_time <= second.info.start_time  # one trial after the other, never side by side
    for child in children:
        assert child.data.tags["sweep"] == "hpcl" and "loss.lambda_hpcl" in child.data.params
        assert any(k.endswith(".val_map") for k in child.data.metrics)
        assert not any("test" in k for k in child.data.metrics)  # trials never score the test split
    assert "test_map.synth_a" in parent.data.metrics
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"optimization_history.png", "param_importances.png", "sweep_summary.json"} <= artifacts
    # The killed worker's trial went on from its checkpoint to the last epoch.
    [killed] = [c for c in children if c.data.tags["trial_id"] == killed_run.removeprefix("hpcl-")]
    assert int(killed.data.tags["resumed_from_epoch"]) >= 0
    assert max(m.step for m in client.get_metric_history(killed.info.run_id, "seed0.val_map")) == 12
    # Storage (issue 22): no finished trial keeps its checkpoint (a note of how it ended stays),
    # trials log no weights, and the sweep says what it kept.
    notes = list((tmp_path / "ray_results" / "hpcl-sweep").glob("trial_*/checkpoint_*/*"))
    assert notes and {p.name for p in notes} == {"trial.json"}
    assert not [a for c in children for a in client.list_artifacts(c.info.run_id) if a.path.endswith(".pt")]
    said = " ".join(result.stderr.split())
    assert f"kept: the sweep's state (Tune; --resume reads it): {tmp_path}/ray_results/hpcl-sweep" in said
    assert f"kept: MLflow store: {db}" in said


def _finished_children(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                "where t.key = 'mlflow.parentRunId' and r.status = 'FINISHED'").fetchone()
    except sqlite3.Error:
        return 0
    return rows[0]
