"""`ray up cluster.local.yaml` for real against 127.0.0.1 over SSH, a one-epoch `hlp train`
through `ray job submit`, then `ray down`: the commands the README gives for machines you own.
(The job is a training, not a sweep: `hlp sweep` on a cluster it joins is tested on two nodes in
tests/sweep/test_sweep_cluster.py, and a sweep here would add a minute to the suite's 20.)

Needs an sshd on 127.0.0.1 that accepts ~/.ssh/id_rsa (`.ci/run` installs and starts one).
`ray up` runs `ray stop` on the head, so this test shuts down any Ray this process started.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from support import EXPERIMENTS, TINY

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _ssh_ready() -> str | None:
    if not shutil.which("ssh") or not Path("~/.ssh/id_rsa").expanduser().exists():
        return "no ssh client or no ~/.ssh/id_rsa"
    probe = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "ConnectTimeout=5",
                            "-i", str(Path("~/.ssh/id_rsa").expanduser()), "127.0.0.1", "true"],
                           capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else f"no sshd on 127.0.0.1 accepts ~/.ssh/id_rsa: {probe.stderr.strip()}"


# Ray 2.60 clusters use token authentication; `ray up` leaves the token in ~/.ray/auth_token on
# the head (this machine), and the job CLI sends it only in token mode.
TOKEN_MODE = {**os.environ, "RAY_AUTH_MODE": "token"}


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=TOKEN_MODE)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_ray_up_job_submit_and_down(tmp_path, synth_root):
    reason = _ssh_ready()
    if reason:
        pytest.skip(reason)
    import ray

    ray.shutdown()  # `ray up` stops every Ray on the head, which is this machine
    cluster_file = ROOT / "cluster.local.yaml"
    spec = yaml.safe_load(cluster_file.read_text())
    if spec["auth"]["ssh_user"] != getpass.getuser():  # the file says root; CI may run as someone else
        spec["auth"]["ssh_user"] = getpass.getuser()
        cluster_file = tmp_path / "cluster.local.yaml"
        cluster_file.write_text(yaml.safe_dump(spec))

    _run("ray", "up", "-y", "--no-config-cache", str(cluster_file))
    try:
        sets = [*TINY, "train.epochs=1", f"data.root={synth_root}",
                f"resources.storage_path={tmp_path / 'ray_results'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
        job_id = f"hlp-train-{uuid.uuid4().hex[:8]}"
        submitted = subprocess.run(
            ["ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--submission-id", job_id, "--",
             sys.executable, "-m", "hlp.cli", "train", str(EXPERIMENTS / "hpcl.yaml"),
             *[x for s in sets for x in ("--set", s)], "--output", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=900, cwd=ROOT, env=TOKEN_MODE)
        status = _run("ray", "job", "status", "--address", "http://127.0.0.1:8265", job_id, timeout=120)
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        assert f"job '{job_id}' succeeded" in (status.stdout + status.stderr).lower()
        metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
        assert set(metrics["domains"]) == {"synth_a", "synth_b"} and metrics["seeds"] == [0]
        # It ran on the cluster that `ray up` started, not on a Ray of its own.
        assert "Connecting to existing Ray cluster" in submitted.stdout + submitted.stderr
    finally:
        _run("ray", "down", "-y", str(cluster_file), timeout=300)
    down = subprocess.run(["ray", "status", "--address", "127.0.0.1:6379"], capture_output=True, text=True, timeout=60)
    assert down.returncode != 0  # the head is gone
