"""`hlp train` as a command: the in-driver debug mode, a GPU worker refused on a Ray without
GPUs, and MLflow runs that end however the command ends (a typo in the Ray address, SIGTERM),
that a rerun reopens, with their artifacts beside the store and one checkpoint per Ray run.

Each command runs its own local Ray under a private RAY_TMPDIR (tests/ray_processes.py), so
a test signals and cleans up exactly its job's processes.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from mlflow.tracking import MlflowClient
from ray_processes import isolated_env, wait_until
from support import EXPERIMENTS, epochs_logged, mlflow_runs

TINY = ["model.d_model=16", "model.heads=2", "model.d_k=16", "model.d_v=16", "model.ffn_dim=32",
        "train.seeds=[0]", "train.threads=1", "eval.selection=carve", "tracking.experiment=train-run"]


def _command(synth_root: Path, db: Path, *sets: str) -> list[str]:
    sets = (f"data.root={synth_root}", *TINY, f"tracking.uri=sqlite:///{db}", *sets)
    return [sys.executable, "-m", "hlp.cli", "train", str(EXPERIMENTS / "youtube.yaml"),
            *[x for s in sets for x in ("--set", s)], "--output", "out"]


def _stores(tmp_path: Path) -> tuple[Path, Path]:
    """(working directory, MLflow database in a folder of its own)."""
    work, db = tmp_path / "work", tmp_path / "store" / "mlflow.db"
    work.mkdir()
    db.parent.mkdir()
    return work, db


def _assert_artifacts_beside_the_store(work: Path, db: Path, run) -> None:
    """MLflow's default would have been ./mlruns of the working directory."""
    assert not (work / "mlruns").exists()
    stored = db.parent / "mlartifacts" / "train-run" / run.info.run_id / "artifacts"
    assert {"config.yaml", "metrics.json", "scores_test.json", "timelines.png"} <= {p.name for p in stored.iterdir()}


@pytest.mark.slow
def test_workers_0_trains_in_the_driver(tmp_path, synth_root, ray_tmpdir):
    """Ray Train's local mode (the documented debug mode) keeps no checkpoint: the results come
    back from the function itself, not from a checkpoint directory that is gone by then."""
    work, db = _stores(tmp_path)
    result = subprocess.run(_command(synth_root, db, "resources.workers=0", "train.epochs=2"), cwd=work,
                            env=isolated_env(ray_tmpdir), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((work / "out" / "metrics.json").read_text())
    assert set(metrics["domains"]) == {"synth_a", "synth_b"}
    assert all(0.0 <= d["test_map"] <= 1.0 for d in metrics["domains"].values())
    assert "kept: no checkpoint" in result.stderr and not (work / "ray_results").exists()
    [run] = mlflow_runs(db, "train-run")
    assert run.info.status == "FINISHED" and "seed0.synth_a.val_map" in run.data.metrics
    _assert_artifacts_beside_the_store(work, db, run)


def test_a_run_ends_failed_when_ray_cannot_start(tmp_path, synth_root):
    """The run exists before Ray starts; a Ray that cannot start (here a typo in its address)
    must not leave it RUNNING."""
    work, db = _stores(tmp_path)
    result = subprocess.run(_command(synth_root, db, "resources.address=127.0.0.1:abc"), cwd=work,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "port" in result.stderr, result.stderr[-3000:]
    assert [r.info.status for r in mlflow_runs(db, "train-run")] == ["FAILED"]


@pytest.mark.slow
def test_sigterm_kills_the_run_and_reruns_reopen_it(tmp_path, synth_root, ray_tmpdir):
    """SIGTERM mid-training: the run ends KILLED and the command exits non-zero. Rerunning the
    same command resumes the Ray run from its checkpoint into the same MLflow run, and rerunning
    the finished training (Ray trains no epoch) reopens it again instead of adding an empty run.
    The Ray run keeps one checkpoint (what resume needs), and the log says where and how large."""
    work, db = _stores(tmp_path)
    command = _command(synth_root, db, "train.epochs=20", "train.checkpoint_every=1", "tracking.register=sigterm-models")
    job = subprocess.Popen(command, cwd=work, env=isolated_env(ray_tmpdir), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: epochs_logged(db) >= 2, job, timeout=420)
    job.send_signal(signal.SIGTERM)
    stderr = job.communicate(timeout=180)[1]
    assert job.returncode == 143 and "interrupted" in stderr, (job.returncode, stderr[-3000:])
    [killed] = mlflow_runs(db, "train-run")
    assert killed.info.status == "KILLED"
    assert not (work / "out" / "metrics.json").exists()

    for _ in range(2):  # resume the killed training, then rerun the finished one
        result = subprocess.run(command, cwd=work, env=isolated_env(ray_tmpdir), capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        [run] = mlflow_runs(db, "train-run")
        assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert "| epoch " not in result.stderr + result.stdout  # the finished run trained no epoch again
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    curve = {m.step for m in client.get_metric_history(run.info.run_id, "seed0.val_map")}
    assert curve == set(range(21))  # every epoch in the one run, none missing
    assert "test_map.synth_a" in run.data.metrics
    _assert_artifacts_beside_the_store(work, db, run)
    [ray_run] = list((work / "ray_results").iterdir())
    # One checkpoint, and it holds what a rerun reads to skip the finished run: its results, no
    # optimizer state and no weights (the model files are in the output folder and in MLflow);
    # the one the kill left half-registered is gone too.
    [checkpoint] = [p for p in ray_run.glob("checkpoint_*") if p.is_dir()]
    assert {p.name for p in checkpoint.iterdir()} == {"results.pt"}
    said = " ".join(result.stderr.split())
    assert re.search(re.escape(f"kept: {ray_run}, ") + r"[0-9.]+ KB \([0-9,]+ bytes\)", said), said[-2000:]
    assert re.search(r"kept: outputs: \S*out, [0-9.]+ [KM]B", said), said[-2000:]
    model = work / "out" / "model_synth_a_seed0.pt"
    _assert_one_mlflow_model_per_domain(client, run, work)
    # Without its model files, the finished seed trains again (deterministically: the same model).
    before = torch.load(model, weights_only=True)["state_dict"]
    model.unlink()
    again = subprocess.run(command, cwd=work, env=isolated_env(ray_tmpdir), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds none of its model files: it trains again" in " ".join(again.stderr.split())
    after = torch.load(model, weights_only=True)["state_dict"]
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert json.loads((work / "out" / "metrics.json").read_text())["mean_test_map"] == run.data.metrics["mean_test_map"]
    _assert_one_mlflow_model_per_domain(client, run, work)  # the run reopened keeps its models: no copies


def _assert_one_mlflow_model_per_domain(client: MlflowClient, run, work: Path) -> None:
    """Each domain's model file is in the run's MLflow Model `model-<domain>`, once however often
    the run was reopened, with one registry version each (tracking.register), and nowhere else
    among the run's artifacts."""
    logged = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert sorted(m.name for m in logged) == ["model-synth_a", "model-synth_b"]
    models = {m.name: m for m in logged}
    for domain in ("synth_a", "synth_b"):
        name = f"model_{domain}_seed0.pt"
        held = torch.load(Path(urlparse(models[f"model-{domain}"].artifact_location).path) / "artifacts" / name,
                          weights_only=True)["state_dict"]
        written = torch.load(work / "out" / name, weights_only=True)["state_dict"]
        assert held.keys() == written.keys() and all(torch.equal(held[k], written[k]) for k in held)
    versions = client.search_model_versions("name = 'sigterm-models'")
    assert sorted((v.tags["domain"], v.tags["seed"], v.source) for v in versions) == [
        (d, "0", f"models:/{models[f'model-{d}'].model_id}") for d in ("synth_a", "synth_b")]
    assert not client.list_artifacts(run.info.run_id, "model")


@pytest.mark.slow
def test_a_gpu_worker_is_refused_at_once_on_a_ray_without_gpus(tmp_path, synth_root, ray_tmpdir):
    """resources.use_gpu on the job's own Ray of a machine with no GPU (it never gets one): the
    command exits 2 before any epoch, naming the key, with a fraction as with a whole GPU."""
    work, db = _stores(tmp_path)
    started = time.monotonic()
    result = subprocess.run(_command(synth_root, db, "resources.use_gpu=true", "resources.gpus_per_worker=0.125"),
                            cwd=work, env=isolated_env(ray_tmpdir), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    said = " ".join(result.stderr.split())
    assert ("no node can hold one Ray Train worker: resources.use_gpu asks 0.125 GPU per worker and the largest "
            "node has 0 (a Ray of this job's own: it gets no more nodes)") in said, said[-3000:]
    assert time.monotonic() - started < 120 and epochs_logged(db) == 0
    assert [r.info.status for r in mlflow_runs(db, "train-run")] == ["FAILED"]
