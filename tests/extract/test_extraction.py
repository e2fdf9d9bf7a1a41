"""`hlp extract` end to end on real media: videos written with PyAV (and the real Big Buck Bunny
clip when the shared data is present), random-weight extractors, a local Ray cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from ray_processes import isolated_env, kill_processes, wait_until
from support import extraction_yaml, run_extract

from hlp.data.feature_store import FeatureStore, schema
from hlp.extract.synth_media import write_broken_video, write_test_video

pytestmark = pytest.mark.slow

GOOD = {"clip_a": 5.0, "clip_b": 6.5}  # seconds; with 2 s clips and `pad`: 3 and 4 clips
FAILED = {
    "short": "shorter than one clip",
    "truncated": "truncated",
    "corrupt": "corrupt",
    "notes": "not a video file",
    "empty": "empty file (0 bytes)",
}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    for name, seconds in GOOD.items():
        write_test_video(folder / f"{name}.mp4", seconds, highlights=[(2.0, 4.0)])
    write_test_video(folder / "silent.mp4", 4.5, audio=False)
    write_test_video(folder / "short.mp4", 1.2)
    long = tmp_path_factory.mktemp("src") / "long.mp4"
    write_test_video(long, 8.0)
    for kind, name in (("truncated", "truncated"), ("corrupt", "corrupt"), ("not_video", "notes"), ("empty", "empty")):
        write_broken_video(folder / f"{name}.mp4", kind, long)
    bunny = (Path(os.environ.get("HLP_DATA_ROOT", "/nonexistent")) / "media" / "bigbuckbunny.mp4").resolve()
    if bunny.is_file():
        (folder / "bigbuckbunny.mp4").symlink_to(bunny)
    return folder


@pytest.fixture(scope="module")
def extracted(media, tmp_path_factory):
    """One extraction over every test video; the tests below read what it left."""
    work = tmp_path_factory.mktemp("extract")
    ray_tmpdir = str(tmp_path_factory.mktemp("r", numbered=True))
    config = extraction_yaml(work / "extract.yaml", f"{media}/*.mp4", str(work / "store"))
    result = run_extract(config, ray_tmpdir)
    assert result.returncode == 3, result.stderr[-3000:]  # finished, with failed videos (README: Commands)
    yield work, config, result, ray_tmpdir
    kill_processes(ray_tmpdir, signal.SIGKILL)


def test_good_videos_are_stored_clip_by_clip_and_bad_ones_recorded_with_the_reason(extracted):
    work, _, result, _ = extracted
    summary = json.loads(result.stdout)
    store = FeatureStore.open(str(work / "store"))
    manifest = store.manifest()
    for name, reason in FAILED.items():
        assert manifest[name]["status"] == "failed" and reason in manifest[name]["reason"], manifest[name]
        assert summary["failed"][name] == manifest[name]["reason"]
        assert f"failed: {name}: " in result.stderr
    # The tables on stderr: done / failed / skipped, then each failed video beside its reason.
    rows = _table_rows(result.stderr)
    assert [str(summary["done"]), str(len(FAILED)), "0"] in rows, result.stderr[-3000:]
    assert {row[0] for row in rows if len(row) == 2} >= set(FAILED), result.stderr[-3000:]
    videos = store.read_videos()
    for name, seconds in GOOD.items():
        clips = videos[name]
        n = int(np.ceil(seconds / 2.0))
        assert manifest[name]["status"] == "done" and manifest[name]["clips"] == n
        assert clips.clip_index.tolist() == list(range(n))
        np.testing.assert_allclose(clips.start_s, np.arange(n) * 2.0)
        assert clips.end_s[-1] == pytest.approx(seconds, abs=0.05)  # the padded last clip ends at the video's end
        assert clips.has_audio and np.abs(clips.audio).sum() > 0
        assert clips.visual.shape == (n, 512) and clips.audio.shape == (n, 2048)
        assert np.isfinite(clips.visual).all() and np.isfinite(clips.audio).all()
    # decoding is its own CPU stage, not fused into the model actors
    assert "TaskPoolMapOperator[MapBatches(decode_videos)]" in result.stderr


def _table_rows(text: str) -> list[list[str]]:
    """The cells of each row of the Rich tables printed in `text` (ASCII borders where not UTF-8)."""
    return [[cell.strip() for cell in re.split("[│|]", line.strip())[1:-1]] for line in text.splitlines()
            if line[:1] in ("│", "|")]


def test_a_silent_video_is_kept_with_a_flag_and_zero_audio(extracted):
    work = extracted[0]
    store = FeatureStore.open(str(work / "store"))
    assert store.manifest()["silent"]["status"] == "done" and store.manifest()["silent"]["has_audio"] is False
    silent = store.read_videos(["silent"])["silent"]
    assert len(silent.clip_index) == 3 and not silent.has_audio
    assert not silent.audio.any() and silent.visual.any()


def test_rows_follow_the_schema_and_every_clip_is_stored_once(extracted):
    work = extracted[0]
    files = sorted((work / "store" / "clips").rglob("*.parquet"))
    table = pq.read_table(files)
    assert table.schema.remove_metadata() == schema(512, 2048)
    keys = list(zip(table.column("video_id").to_pylist(), table.column("clip_index").to_pylist()))
    assert len(keys) == len(set(keys))
    assert set(table.column("visual_extractor").to_pylist()) == {"r3d_18"}
    assert set(table.column("audio_version").to_pylist()) == {"random-seed0"}
    meta = json.loads((work / "store" / "store.json").read_text())
    assert meta["visual"] == {"name": "r3d_18", "version": "random-seed0", "weights": "random", "dim": 512}
    assert meta["clip_seconds"] == 2.0 and meta["last_clip"] == "pad"


def test_the_real_big_buck_bunny_clip(extracted, media):
    if not (media / "bigbuckbunny.mp4").exists():
        pytest.skip("HLP_DATA_ROOT/media/bigbuckbunny.mp4 is absent (see README)")
    store = FeatureStore.open(str(extracted[0] / "store"))
    entry = store.manifest()["bigbuckbunny"]
    clips = store.read_videos(["bigbuckbunny"])["bigbuckbunny"]
    assert entry["status"] == "done" and entry["has_audio"] is True
    assert clips.clip_index.tolist() == [0, 1, 2]  # 5.3 s: two full clips and a padded third
    np.testing.assert_allclose(clips.start_s, [0.0, 2.0, 4.0])
    assert clips.end_s[-1] == pytest.approx(5.3, abs=0.05) and entry["duration_s"] == pytest.approx(5.3, abs=0.05)
    assert np.abs(clips.audio).sum() > 0


def test_a_rerun_redoes_nothing(extracted):
    work, config, _, ray_tmpdir = extracted
    files = {p: p.stat().st_mtime_ns for p in (work / "store" / "clips").rglob("*.parquet")}
    done_before = {v: e["finished_at"] for v, e in FeatureStore.open(str(work / "store")).manifest().items()
                   if e["status"] == "done"}
    result = run_extract(config, ray_tmpdir)
    assert result.returncode == 3, result.stderr[-3000:]  # the bad videos are retried, and fail again
    summary = json.loads(result.stdout)
    assert summary["already_done"] == len(done_before) and summary["done"] == 0
    assert sorted(summary["failed"]) == sorted(FAILED)
    assert {p: p.stat().st_mtime_ns for p in (work / "store" / "clips").rglob("*.parquet")} == files
    manifest = FeatureStore.open(str(work / "store")).manifest()
    assert {v: manifest[v]["finished_at"] for v in done_before} == done_before


def test_a_store_made_with_other_extractors_is_refused(extracted, ray_tmpdir):
    config = extracted[1]
    result = run_extract(config, ray_tmpdir, "visual.name=r2plus1d_18")
    assert result.returncode == 2
    assert "other settings" in result.stderr and "r2plus1d_18" in result.stderr


def test_typos_and_missing_inputs_are_named(tmp_path, ray_tmpdir):
    config = extraction_yaml(tmp_path / "e.yaml", str(tmp_path / "nowhere" / "*.mp4"), str(tmp_path / "store"))
    typo = run_extract(config, ray_tmpdir, "visual.wieghts=x")
    assert typo.returncode == 2 and "visual.wieghts" in typo.stderr and "visual.weights" in typo.stderr
    missing = run_extract(config, ray_tmpdir)
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "matched no video files" in missing.stderr
    weights = run_extract(config, ray_tmpdir, "audio.weights=null")
    assert weights.returncode == 2 and "Cnn14_mAP=0.431.pth" in " ".join(weights.stderr.split())
    assert not (tmp_path / "store").exists()


def test_a_killed_extraction_resumes_and_stores_every_clip_exactly_once(tmp_path, ray_tmpdir):
    folder = tmp_path / "videos"
    folder.mkdir()
    names = [f"v{i}" for i in range(6)]
    for i, name in enumerate(names):
        write_test_video(folder / f"{name}.mp4", 4.0, seed=i)  # two clips each
    config = extraction_yaml(tmp_path / "e.yaml", str(folder), str(tmp_path / "store"), batch_size=1)
    env = {**isolated_env(ray_tmpdir), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    job = subprocess.Popen([sys.executable, "-m", "hlp.cli", "extract", str(config)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest_dir = tmp_path / "store" / "manifest"
    wait_until(lambda: manifest_dir.is_dir() and len(list(manifest_dir.glob("*.json"))) >= 2, job)
    kill_processes(ray_tmpdir, signal.SIGKILL)  # the driver and its whole cluster, mid-job
    job.wait(timeout=60)
    before = {v: e["finished_at"] for v, e in FeatureStore.open(str(tmp_path / "store")).manifest().items()}
    assert 2 <= len(before) < len(names)

    result = run_extract(config, ray_tmpdir)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["already_done"] == len(before) and summary["done"] == len(names) - len(before)
    store = FeatureStore.open(str(tmp_path / "store"))
    manifest = store.manifest()
    assert {v: manifest[v]["finished_at"] for v in before} == before  # finished videos were not redone
    table = pq.read_table(sorted((tmp_path / "store" / "clips").rglob("*.parquet")))
    keys = sorted(zip(table.column("video_id").to_pylist(), table.column("clip_index").to_pylist()))
    assert keys == sorted((v, c) for v in names for c in range(2))  # every clip, exactly once
