"""What several test folders share: the experiment files, a tiny sweep, an extraction file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from ray_processes import isolated_env

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TINY = ["model.d_model=16", "model.heads=2", "model.d_k=16", "model.d_v=16", "model.ffn_dim=32",
        "train.epochs=3", "train.seeds=[0]", "train.threads=1", "search.num_samples=3", "search.grace_period=1", "search.seeds=[0]"]  # a sweep in seconds


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
