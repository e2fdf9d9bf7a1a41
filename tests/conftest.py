"""Shared fixtures: the real benchmark data, a synthetic dataset, and a real S3 endpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hlp.cluster import LOCAL_TRAIN_ENV
from hlp.data.synth import SynthSpec, write_synthetic

# Ray Train V2's controller collects each report when it polls its workers (every 2 s by
# default) and a worker's next report waits for that, so epochs of a tiny test model would each
# take 2 s. Faster polling keeps the suite short; it is inherited by every cluster tests start.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

SECRET = "hlp-test-secret-8d1f"  # an MLflow password in the environment: it must never be recorded
SMALL_SYNTH = SynthSpec(videos_per_domain=10, min_clips=12, max_clips=30, rgb_dim=8, audio_dim=16)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The public features; tests that need them skip when HLP_DATA_ROOT is absent."""
    root = os.environ.get("HLP_DATA_ROOT")
    if not root or not (Path(root) / "youtube" / "youtube_anno.json").is_file():
        pytest.skip("HLP_DATA_ROOT is not set or holds no youtube/youtube_anno.json (see README)")
    return Path(root).resolve()


@pytest.fixture
def ray_tmpdir():
    """A short private temp dir for one job's own Ray cluster (socket paths must stay under 107
    bytes); whatever of that cluster is left is killed afterwards."""
    import shutil
    import signal
    import tempfile

    from ray_processes import kill_processes

    path = tempfile.mkdtemp(prefix="r", dir="/tmp")
    yield path
    kill_processes(path, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster_beside(ray_tmpdir):
    """A Ray cluster that someone else started on this machine (`ray start --head`): the one
    `ray.init()` with no address would join, through RAY_TMPDIR's address file."""
    import ray.util

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmpdir}
    port = _free_port()
    subprocess.run(["ray", "start", "--head", f"--port={port}", "--num-cpus=1"], env=env, check=True,
                   capture_output=True, timeout=180)
    yield f"{ray.util.get_node_ip_address()}:{port}", env  # ray_tmpdir's teardown kills its processes


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(str(root), SMALL_SYNTH)
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """A real S3 API: moto's server mode on 127.0.0.1 (started by .ci/run, or here if absent)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = os.environ.get("HLP_TEST_S3_ENDPOINT")
    process = None
    if not endpoint:
        port = _free_port()
        log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
        )
        endpoint = f"http://127.0.0.1:{port}"
        _wait_for(port)
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    if process:
        process.terminate()


def _wait_for(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"moto server did not start on port {port}")


@pytest.fixture
def two_nodes(monkeypatch, s3_endpoint):
    """Two raylets (2 CPUs each) on 127.0.0.1; their workers inherit this environment."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "hlp")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    port = _free_port()
    # Ray's own helpers (Train's placement-group cleaner) find "the" cluster through RAY_ADDRESS;
    # without it they refuse to choose when another Ray runs on the machine.
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    for key, value in LOCAL_TRAIN_ENV.items():  # machines of one's own, as for a Ray that hlp starts
        monkeypatch.setenv(key, value)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "gcs_server_port": port})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()
