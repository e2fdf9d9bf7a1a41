"""What several test folders share: the experiment files, a tiny sweep, an extraction file, and
reading a test's MLflow store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml
from ray_processes import isolated_env

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TINY = ["model.d_model=16", "model.heads=2", "model.d_k=16", "model.d_v=16", "model.ffn_dim=32",
        "train.epochs=3", "train.seeds=[0]", "train.threads=1", "search.num_samples=3", "search.grace_period=1", "search.seeds=[0]"]  # a sweep in seconds



def sweep_command(synth_root: Path, *sets: str) -> list[str]:
    """`hlp sweep experiments/hpcl.yaml` of TINY on the synthetic data, plus `sets`, into ./out."""
    return [sys.executable, "-m", "hlp.cli", "sweep", str(EXPERIMENTS / "hpcl.yaml"),
            "--set", f"data.root={synth_root}", *[x for s in (*TINY, *sets) for x in ("--set", s)], "--output", "out"]


def mlflow_runs(db: Path, experiment: str) -> list:
    """Every run of `experiment` in the SQLite store `db`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def epochs_logged(db: Path, key: str = "seed0.val_map") -> int:
    """Epochs of one metric's curve in the store, read with sqlite (0 while it is being created),
    so a test can wait for training to be under way."""
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from metrics where key = ?", (key,)).fetchone()[0]
    except sqlite3.Error:
        return 0

def extraction_yaml(path: Path, inputs: str, output: str, **resources) -> Path:
    """An extraction file with untrained (seeded) networks: tests never download weights."""
    path.write_text(yaml.safe_dump({
        "name": "test-extract", "inputs": inputs, "output": output,
        "visual": {"name": "r3d_18", "weights": "random"}, "audio": {"name": "cnn14", "weights": "random"},
        "resources": {"batch_size": 2, "threads": 2, **resources}}))
    return path


def run_extract(config: Path, ray_tmpdir: str, *sets: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hlp.cli", "extract", str(config),
                           *[x for s in sets for x in ("--set", s)]],
                          env={**isolated_env(ray_tmpdir), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
                          capture_output=True, text=True, timeout=timeout)
