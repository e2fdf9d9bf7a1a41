"""Jobs on one machine never harm each other: with no address configured a job starts a Ray of
its own and never joins the cluster running beside it (`ray.init()` alone would, through the
address file of the cluster last started), and a healthy run beside another Ray prints no Ray
traceback, only hlp's own lines. The cluster beside it lives under the test's private RAY_TMPDIR, so the test starts,
finds and kills only its own processes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import EXPERIMENTS, TINY

pytestmark = pytest.mark.slow

PROBE = """
import os, sys
import ray
from hlp.cluster import ensure_ray
ensure_ray(sys.argv[1] if len(sys.argv) > 1 else None)
print("GCS", ray.get_runtime_context().gcs_address)

@ray.remote(num_cpus=0)
def address_seen_by_a_worker():
    return os.environ.get("RAY_ADDRESS")

print("WORKER", ray.get(address_seen_by_a_worker.remote()))
"""


def _probe(env: dict[str, str], *args: str) -> tuple[dict[str, str], str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith(("GCS", "WORKER")))
    return lines, result.stderr


def test_a_job_with_no_address_starts_its_own_ray(cluster_beside):
    other, env = cluster_beside
    own, _ = _probe(env)
    assert own["GCS"] != other
    # Every process of the job's Ray knows its address, so Ray's helpers that look "the" cluster
    # up (Train's placement-group cleaner) never pick the other one.
    assert own["WORKER"] == own["GCS"]


def test_auto_joins_the_cluster_running_here_and_says_so(cluster_beside):
    other, env = cluster_beside
    joined, stderr = _probe(env, "auto")
    assert joined["GCS"] == other
    assert "joining the Ray cluster running on this machine" in stderr


def test_a_training_beside_another_ray_prints_no_ray_traceback(tmp_path, synth_root, cluster_beside):
    _, env = cluster_beside
    sets = [*TINY, f"data.root={synth_root}", "data.domains=[synth_a]", "train.epochs=1", "eval.selection=carve"]
    result = subprocess.run([sys.executable, "-m", "hlp.cli", "train", str(EXPERIMENTS / "youtube.yaml"),
                             *[x for s in sets for x in ("--set", s)], "--output", "out"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "multiple active Ray instances" not in result.stderr
    # Quiet by default: one short line per epoch, none of Ray's 600-character TrainingReport lines.
    output = result.stdout + result.stderr
    assert "TrainingReport(" not in output and "Token authentication" not in output
    assert "seed 0 | epoch 1/1 | loss " in output
