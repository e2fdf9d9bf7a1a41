"""The Parquet feature store: schema, manifest, settings check, and the UMT import/export path."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from hlp.data.datasets import DataError, load_dataset
from hlp.data.feature_store import Clips, FeatureStore, StoreError, schema
from hlp.data.umt_layout import export_umt, import_umt
from hlp.storage import filesystem

META = {"clip_seconds": 2.0, "last_clip": "pad", "chunk_clips": 4,
        "visual": {"name": "r3d_18", "version": "random-seed0", "weights": "random", "dim": 6},
        "audio": {"name": "cnn14", "version": "random-seed0", "weights": "random", "dim": 3},
        "visual_parts": [["rgb", 6]], "frame_contract": None}


def _clips(n: int, start: int = 0, has_audio: bool = True) -> Clips:
    index = np.arange(start, start + n)
    rng = np.random.default_rng(start)
    return Clips(index, index * 2.0, index * 2.0 + 2.0, rng.normal(size=(n, 6)).astype(np.float32),
                 rng.normal(size=(n, 3)).astype(np.float32) if has_audio else np.zeros((n, 3), np.float32), has_audio)


def test_chunks_follow_the_schema_and_read_back_in_clip_order(tmp_path):
    store = FeatureStore.create_or_check(str(tmp_path / "store"), META)
    second, first = _clips(2, start=4), _clips(4)
    store.write_chunk("-odd/id", 1, second)  # written out of order, as parallel actors do
    store.write_chunk("-odd/id", 0, first)
    store.write_chunk("silent", 0, _clips(3, has_audio=False))
    store.record({"video_id": "-odd/id", "status": "done", "clips": 6})
    store.record({"video_id": "silent", "status": "done", "clips": 3})
    files = sorted((tmp_path / "store" / "clips").rglob("*.parquet"))
    assert [f.name for f in files] == ["chunk-00000.parquet", "chunk-00001.parquet", "chunk-00000.parquet"]
    assert pq.read_schema(files[0]).remove_metadata() == schema(6, 3)
    table = pq.read_table(files[0])
    assert table.column("visual_extractor").to_pylist() == ["r3d_18"] * 4
    assert table.column("audio_version").to_pylist() == ["random-seed0"] * 4
    videos = store.read_videos()
    assert sorted(videos) == ["-odd/id", "silent"]
    odd = videos["-odd/id"]
    assert odd.clip_index.tolist() == list(range(6))
    np.testing.assert_array_equal(odd.visual, np.concatenate([first.visual, second.visual]))
    np.testing.assert_array_equal(odd.end_s, np.arange(1, 7) * 2.0)
    assert videos["silent"].has_audio is False and not videos["silent"].audio.any()


def test_only_done_videos_are_read_and_a_rewrite_replaces_the_chunk(tmp_path):
    store = FeatureStore.create_or_check(str(tmp_path / "s"), META)
    store.write_chunk("a", 0, _clips(2))
    assert store.read_videos() == {}  # written but not marked done: an interrupted video
    store.clear_video("a")
    store.write_chunk("a", 0, _clips(3))
    store.write_chunk("a", 0, _clips(3))  # a retried write lands on the same file
    store.record({"video_id": "a", "status": "done", "clips": 3})
    assert len(store.read_videos()["a"].clip_index) == 3


def test_a_store_refuses_other_settings_and_non_stores_are_named(tmp_path):
    FeatureStore.create_or_check(str(tmp_path / "s"), META)
    other = {**META, "visual": {**META["visual"], "name": "r2plus1d_18"}}
    with pytest.raises(StoreError, match="other settings.*visual"):
        FeatureStore.create_or_check(str(tmp_path / "s"), other)
    with pytest.raises(StoreError, match="store.json is missing"):
        FeatureStore.open(str(tmp_path / "nothing"))


def test_import_export_round_trip_on_the_public_release(data_root, tmp_path):
    """The release through the store trains on exactly the same arrays; exported files equal
    the originals (as float32)."""
    summary = import_umt(str(data_root), "youtube", str(tmp_path / "store"))
    assert summary["done"] == 242 and summary["failed"] == 0  # the four domains with features
    umt = load_dataset("youtube", str(data_root), domains=["dog", "surfing"])
    parquet = load_dataset("youtube", str(data_root), domains=["dog", "surfing"], features=str(tmp_path / "store"))
    assert sorted(parquet.videos) == sorted(umt.videos)
    assert parquet.features["visual"]["name"] == "i3d_rgb+opt"
    for vid, video in umt.videos.items():
        np.testing.assert_array_equal(parquet.videos[vid].visual, video.visual)
        np.testing.assert_array_equal(parquet.videos[vid].audio, video.audio)
        np.testing.assert_array_equal(parquet.videos[vid].labels, video.labels)
    # the same videos are skipped either way (skating, skiing and the few without features)
    skipped = {s.video_id for s in load_dataset("youtube", str(data_root), features=str(tmp_path / "store")).skipped}
    assert skipped == {s.video_id for s in load_dataset("youtube", str(data_root)).skipped}
    export_umt(str(tmp_path / "store"), str(tmp_path / "exported"), "youtube")
    vid = next(iter(umt.videos))
    for name in (f"video_features/{vid}_rgb.npy", f"video_features/{vid}_opt.npy", f"audio_features/{vid}.npy"):
        original = np.load(data_root / "youtube" / name).astype(np.float32)
        exported = np.load(tmp_path / "exported" / "youtube" / name)
        n = min(len(original), len(exported))
        np.testing.assert_array_equal(exported[:n], original[:n])


def test_a_video_whose_extraction_failed_is_skipped_with_the_reason(synth_root, tmp_path):
    store = str(tmp_path / "store")
    import_umt(str(synth_root), "youtube", store)
    fs, base = filesystem(store)
    victim = "synth_a_003"
    FeatureStore.open(store).record({"video_id": victim, "status": "failed", "reason": "corrupt: bad NAL at 3.2 s"})
    data = load_dataset("youtube", str(synth_root), features=store)
    assert victim not in data.videos
    (skipped,) = [s for s in data.skipped if s.video_id == victim]
    assert "extraction failed: corrupt: bad NAL at 3.2 s" in skipped.reason and skipped.path == store
    with pytest.raises(DataError, match=victim):
        load_dataset("youtube", str(synth_root), features=store, on_bad="error")


def test_the_import_and_export_commands(synth_root, tmp_path):
    from typer.testing import CliRunner

    from hlp.cli import app

    runner = CliRunner()
    store, out = str(tmp_path / "store"), str(tmp_path / "exported")
    imported = runner.invoke(app, ["data", "import-umt", "--root", str(synth_root), "--dataset", "youtube", "--out", store])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["done"] == 20
    exported = runner.invoke(app, ["data", "export-umt", "--store", store, "--out", out])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout) == {"out": out, "dataset": "youtube", "videos": 20, "visual_streams": ["rgb", "opt"]}
    again = load_dataset("youtube", str(synth_root), features=store)
    assert len(again.videos) == 20
    refused = runner.invoke(app, ["data", "export-umt", "--store", str(tmp_path / "none"), "--out", out])
    assert refused.exit_code == 2 and "store.json is missing" in " ".join(refused.output.split())
