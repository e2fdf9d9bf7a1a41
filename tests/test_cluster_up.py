"""`ray up cluster.local.yaml` for real against 127.0.0.1 over SSH, a one-epoch `hlp train`
through `ray job submit`, then `ray down`: the commands the README gives for machines you own.
(The job is a training, not a sweep: `hlp sweep` on a cluster it joins is tested on two nodes in
tests/sweep/test_sweep_cluster.py, and a sweep here would add a minute to the suite's 20.)

`ray up cluster.local.yaml` runs `ray stop` on the head, which ends every Ray process it can see,
so the test gives it a world of its own: a PID, network and mount namespace (`unshare`) with its
own loopback, its own sshd on 127.0.0.1:22, its own /tmp/ray and ports, where `ray stop` sees
only what the test started there. A Ray cluster started beside the test (as a user's experiment
would be) must be alive afterwards. Needs root, `unshare`/`nsenter` and sshd (`.ci/run` installs
openssh-server); otherwise it skips and says why.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from support import EXPERIMENTS, TINY

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


SSHD = "/usr/sbin/sshd"
# The world's first process: loopback up, a private /tmp/ray (Ray's sessions and its address
# file), an sshd, then it waits; when it is killed, the kernel kills everything in its namespace.
WORLD_INIT = f"ip link set lo up && mount -t tmpfs tmpfs /tmp/ray && mkdir -p /run/sshd && {SSHD} && exec sleep infinity"


def _world_missing() -> str | None:
    if os.geteuid() != 0:
        return "not root: cannot make a PID, network and mount namespace for `ray up`'s `ray stop`"
    for tool in ("unshare", "nsenter", "ip", "ssh"):
        if not shutil.which(tool):
            return f"no {tool} on PATH"
    if not Path(SSHD).exists() or not Path("~/.ssh/id_rsa").expanduser().exists():
        return f"no {SSHD} or no ~/.ssh/id_rsa (.ci/run installs and creates both)"
    return None


@pytest.fixture
def own_world():
    """`nsenter` arguments that run a command inside a world of the test's own."""
    reason = _world_missing()
    if reason:
        pytest.skip(reason)
    Path("/tmp/ray").mkdir(exist_ok=True)  # the mount point; what is mounted there stays in the world
    holder = subprocess.Popen(["unshare", "--pid", "--net", "--mount", "--fork", "--mount-proc", "sh", "-c", WORLD_INIT])
    try:
        init = _first_child(holder.pid)
        enter = ["nsenter", "-t", str(init), "--pid", "--net", "--mount", "--"]
        _wait_for_sshd(enter)
        yield enter
    finally:
        if "init" in locals():
            os.kill(init, signal.SIGKILL)  # and with it every process of the world
        holder.kill()
        holder.wait()


def _first_child(pid: int, timeout: float = 30) -> int:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise AssertionError("unshare started no process")


def _wait_for_sshd(enter: list[str], timeout: float = 60) -> None:
    import time

    deadline, probe = time.time() + timeout, None
    while time.time() < deadline:
        probe = subprocess.run([*enter, "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                                "ConnectTimeout=5", "-i", str(Path("~/.ssh/id_rsa").expanduser()), "127.0.0.1", "true"],
                               capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail(f"the world's sshd on 127.0.0.1 does not accept ~/.ssh/id_rsa: {probe.stderr.strip() if probe else ''}")


# Ray 2.60 clusters use token authentication; `ray up` leaves the token in ~/.ray/auth_token on
# the head (this machine), and the job CLI sends it only in token mode.
TOKEN_MODE = {**os.environ, "RAY_AUTH_MODE": "token"}


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=TOKEN_MODE)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_ray_up_job_submit_and_down(tmp_path, synth_root, own_world, cluster_beside):
    cluster_file = ROOT / "cluster.local.yaml"
    spec = yaml.safe_load(cluster_file.read_text())
    if spec["auth"]["ssh_user"] != getpass.getuser():  # the file says root; CI may run as someone else
        spec["auth"]["ssh_user"] = getpass.getuser()
        cluster_file = tmp_path / "cluster.local.yaml"
        cluster_file.write_text(yaml.safe_dump(spec))

    _run(*own_world, "ray", "up", "-y", "--no-config-cache", str(cluster_file))
    try:
        sets = [*TINY, "train.epochs=1", f"data.root={synth_root}",
                f"resources.storage_path={tmp_path / 'ray_results'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
        job_id = f"hlp-train-{uuid.uuid4().hex[:8]}"
        submitted = subprocess.run(
            [*own_world, "ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--submission-id", job_id, "--",
             sys.executable, "-m", "hlp.cli", "train", str(EXPERIMENTS / "hpcl.yaml"),
             *[x for s in sets for x in ("--set", s)], "--output", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=900, cwd=ROOT, env=TOKEN_MODE)
        status = _run(*own_world, "ray", "job", "status", "--address", "http://127.0.0.1:8265", job_id, timeout=120)
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        assert f"job '{job_id}' succeeded" in (status.stdout + status.stderr).lower()
        metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
        assert set(metrics["domains"]) == {"synth_a", "synth_b"} and metrics["seeds"] == [0]
        # It ran on the cluster that `ray up` started, not on a Ray of its own.
        assert "joining the Ray cluster at" in submitted.stdout + submitted.stderr
    finally:
        _run(*own_world, "ray", "down", "-y", str(cluster_file), timeout=300)
    down = subprocess.run([*own_world, "ray", "status", "--address", "127.0.0.1:6379"], capture_output=True, text=True,
                          timeout=60, env=TOKEN_MODE)
    assert down.returncode != 0  # the head is gone
    beside, env = cluster_beside  # and the cluster that ran beside the test is not
    alive = subprocess.run(["ray", "status", "--address", beside], capture_output=True, text=True, timeout=60,
                           env={**env, "RAY_AUTH_MODE": "token"})
    assert alive.returncode == 0, alive.stdout[-2000:] + alive.stderr[-2000:]
