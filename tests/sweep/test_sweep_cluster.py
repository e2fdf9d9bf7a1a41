"""`hlp sweep` on real services: a two-node Ray cluster on 127.0.0.1, Ray storage on S3 (moto's
server), and a real `mlflow server` with a SQLite backend and its artifacts in an S3 bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import s3fs
from conftest import SECRET
from mlflow.tracking import MlflowClient
from support import EXPERIMENTS, TINY

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def buckets(s3_endpoint):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    for bucket in ("hlp-ray", "hlp-mlflow"):
        if not fs.exists(bucket):
            fs.mkdir(bucket)
    return fs


@pytest.fixture
def mlflow_server(tmp_path, buckets, s3_endpoint):
    """`mlflow server`: runs in SQLite, artifacts proxied to s3://hlp-mlflow (only it needs S3 access)."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint}
    log = open(tmp_path / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", "s3://hlp-mlflow/artifacts", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], env=env, stdout=log, stderr=log)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError((tmp_path / "mlflow-server.log").read_text()[-2000:]) from None
            time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(timeout=30)


def test_sweep_on_two_nodes_with_s3_and_an_mlflow_server(tmp_path, synth_root, buckets, mlflow_server, two_nodes):
    """Also the objective: each trial trains seeds 0 and 1 side by side (two workers), and what
    Tune, Optuna and ASHA read is their mean; and the verdict that the summary, the printed
    table and the parent run carry."""
    sets = [*TINY, f"data.root={synth_root}", f"resources.address={two_nodes.address}",
            "resources.storage_path=s3://hlp-ray/sweeps", f"tracking.uri={mlflow_server}", "search.max_concurrent=2",
            "search.num_samples=2", "search.seeds=[0,1]", "train.epochs=2"]
    result = subprocess.run(
        [sys.executable, "-m", "hlp.cli", "sweep", str(EXPERIMENTS / "hpcl.yaml"),
         *[x for s in sets for x in ("--set", s)], "--output", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    summary = json.loads((tmp_path / "out" / "sweep_summary.json").read_text())
    assert summary["trials"] == 2

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("hpcl-sweep")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.info.run_name == "sweep-hpcl"]
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    children = [r for r in nested if "trial_id" in r.data.tags]  # the trials; the final runs are nested too
    assert len(children) == 2
    assert sorted(r.data.tags.get("role") for r in nested if r not in children) == ["best", "defaults"]
    finished = [c for c in children if "stopped_early" not in c.data.tags]
    assert finished and all(c.info.status == "FINISHED" for c in finished), \
        [(c.info.run_name, c.info.status, c.data.tags) for c in children]
    for child in children:
        assert any(k.startswith("seed0.") and k.endswith(".val_map") for k in child.data.metrics)
        assert "config.yaml" in {a.path for a in client.list_artifacts(child.info.run_id)}
    for child in finished:  # a trial that ran to its end also has its score figure, and never weights
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {"config.yaml", "val_scores.png"}
    for child in children:  # both seeds' curves and their mean, at every epoch the trial reported
        curves = {k: {m.step: m.value for m in client.get_metric_history(child.info.run_id, k)}
                  for k in ("seed0.val_map", "seed1.val_map", "val_map")}
        assert curves["val_map"] and set(curves["val_map"]) == set(curves["seed0.val_map"]) == set(curves["seed1.val_map"])
        for step, value in curves["val_map"].items():
            assert value == pytest.approx((curves["seed0.val_map"][step] + curves["seed1.val_map"][step]) / 2)
        assert curves["seed0.val_map"] != curves["seed1.val_map"]  # two seeds, two models
        assert child.data.tags["replicas"] == "seed0, seed1"
    # What Tune received (and so Optuna and ASHA, which read `val_map`): the mean, every epoch.
    reported = [json.loads(line) for path in buckets.glob("hlp-ray/sweeps/hpcl-sweep/*/result.json")
                for line in buckets.cat_file(path).decode().splitlines()]
    per_epoch = [r for r in reported if "seed0.val_map" in r]
    assert len(per_epoch) >= 2 * 2  # both trials, at least epochs 0 and 1 (ASHA may stop one later)
    for r in per_epoch:
        assert r["val_map"] == pytest.approx((r["seed0.val_map"] + r["seed1.val_map"]) / 2)
        assert "epoch" in r  # ASHA's time attribute: without it ASHA passes over every report
    # The verdict: the winner against the defaults on train.seeds, paired, with its interval.
    verdict = summary["verdict"]
    assert set(verdict["domains"]) == {"synth_a", "synth_b"}
    low, high = verdict["ci95"]
    assert low <= verdict["diff"] <= high and verdict["beats_defaults"] == (low > 0)
    assert parent.data.tags["verdict"] == verdict["says"] and "verdict.diff" in parent.data.metrics
    assert "best - defaults" in result.stdout

    for run in runs:  # secrets never reach params or tags
        assert not any(SECRET in v for v in [*run.data.params.values(), *run.data.tags.values()])

    # Trials ran on both nodes (the driver's node, and rank 0's node).
    nodes = {n.node_id for n in two_nodes.list_all_nodes()}
    used = {c.data.tags[t] for c in children for t in ("node_id", "worker_node_id")}
    assert used == nodes and len(nodes) == 2

    # Artifacts went through the server to the bucket; Ray's trial state and checkpoints to S3.
    stored = buckets.find("hlp-mlflow/artifacts")
    for name in ("val_scores.png", "model_synth_a_seed0.pt", "config.yaml", "optimization_history.png",
                 "sweep_summary.json"):  # the models are the final runs'
        assert any(path.endswith(name) for path in stored), name
    ray_files = buckets.find("hlp-ray/sweeps")
    assert any("/hpcl-sweep/" in p for p in ray_files)
    # Each trial stored checkpoints on S3 while it ran, and they went when it ended; the finals'
    # runs keep what a rerun reads to skip them: results, no weights or optimizer state.
    assert any(r.get("checkpoint_dir_name") for r in reported)
    in_checkpoints = [p for p in ray_files if p.rsplit("/", 2)[1].startswith("checkpoint_")]
    left = [p for p in in_checkpoints if "/hpcl-sweep/" in p]
    assert left and {p.rsplit("/", 1)[1] for p in left} == {"trial.json"}  # how each trial ended, no state
    finals = [p for p in in_checkpoints if "/hpcl-sweep/" not in p]
    assert finals and {p.rsplit("/", 1)[1] for p in finals} == {"results.pt"}
