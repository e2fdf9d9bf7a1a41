"""`hlp extract` on a two-node Ray cluster on 127.0.0.1, reading videos from and writing the
store to S3 (moto's server), with visual weights from a checkpoint the test writes to S3."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import s3fs
import torch
from support import extraction_yaml

from hlp.data.feature_store import FeatureStore
from hlp.extract.synth_media import write_broken_video, write_test_video
from hlp.models.extractors import r3d_18

pytestmark = pytest.mark.slow


def test_extraction_on_two_nodes_from_and_to_s3(tmp_path, s3_endpoint, two_nodes):  # noqa: F811
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    for bucket in ("hlp-videos", "hlp-features", "hlp-weights"):
        if not fs.exists(bucket):
            fs.mkdir(bucket)
    for i in range(6):
        write_test_video(tmp_path / f"clip{i}.mp4", 4.0, seed=i)
        fs.put(str(tmp_path / f"clip{i}.mp4"), f"hlp-videos/in/clip{i}.mp4")
    write_broken_video(tmp_path / "bad.mp4", "truncated", tmp_path / "clip0.mp4")
    fs.put(str(tmp_path / "bad.mp4"), "hlp-videos/in/bad.mp4")
    fs.pipe("hlp-videos/in/README.txt", b"not listed: not a video suffix")
    buffer = io.BytesIO()
    torch.save(r3d_18().state_dict(), buffer)  # weights this test made; never downloaded
    fs.pipe("hlp-weights/r3d_18.pt", buffer.getvalue())

    config = extraction_yaml(tmp_path / "e.yaml", "s3://hlp-videos/in/", "s3://hlp-features/store",
                             address=two_nodes.address, actors=2)
    result = subprocess.run(
        [sys.executable, "-m", "hlp.cli", "extract", str(config), "--set", "visual.weights=s3://hlp-weights/r3d_18.pt"],
        capture_output=True, text=True, timeout=900, env={**__import__("os").environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"})
    assert result.returncode == 3, result.stderr[-3000:]  # finished, with one failed video (README: Commands)
    summary = json.loads(result.stdout)
    assert summary["videos"] == 7 and summary["done"] == 6 and list(summary["failed"]) == ["bad"]

    store = FeatureStore.open("s3://hlp-features/store")
    assert store.meta["visual"]["weights"] == "s3://hlp-weights/r3d_18.pt"
    assert len(store.meta["visual"]["version"]) == 12  # the weights file's hash
    manifest = store.manifest()
    assert manifest["bad"]["status"] == "failed" and "truncated" in manifest["bad"]["reason"]
    videos = store.read_videos()
    assert sorted(videos) == [f"clip{i}" for i in range(6)]
    assert all(v.clip_index.tolist() == [0, 1] for v in videos.values())
    worked = {node for e in manifest.values() if e["status"] == "done" for node in e["nodes"]}
    assert worked == {node.node_id for node in two_nodes.list_all_nodes()}  # both nodes did work
    assert fs.find("hlp-features/store/clips")  # the rows are in the bucket
