"""UMT-layout readers: local and S3 roots, protocols, and every kind of bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import SMALL_SYNTH

from hlp.data.datasets import DataError, changes_read, load_dataset, top_half
from hlp.data.protocols import (
    available_domains,
    carve_validation,
    domain_split,
    held_out_ids,
    training_ids,
)


@pytest.fixture()
def synth_copy(synth_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    return root


def test_reads_every_synthetic_video(synth_root):
    ds = load_dataset("youtube", str(synth_root))
    assert len(ds.videos) == SMALL_SYNTH.videos_per_domain * len(SMALL_SYNTH.domains)
    video = next(iter(ds.videos.values()))
    assert video.visual.shape[1] == 2 * SMALL_SYNTH.rgb_dim  # rgb ++ flow
    assert video.audio.shape[1] == SMALL_SYNTH.audio_dim
    assert video.visual.dtype == np.float32 and len(video.labels) == video.num_clips
    assert ds.skipped == []


def test_highlights_are_cooccurring_events(synth_root):
    ds = load_dataset("youtube", str(synth_root))
    assert all(v.labels.any() and not v.labels.all() for v in ds.videos.values())


def test_missing_feature_file_is_skipped_and_listed(synth_copy):
    (synth_copy / "youtube/audio_features/synth_a_003.npy").unlink()
    ds = load_dataset("youtube", str(synth_copy))
    assert "synth_a_003" not in ds.videos
    [skip] = ds.skipped
    assert skip.video_id == "synth_a_003" and "missing feature file" in skip.reason
    assert skip.path.endswith("audio_features/synth_a_003.npy")
    with pytest.raises(DataError, match="synth_a_003.*missing feature file.*synth_a_003.npy"):
        load_dataset("youtube", str(synth_copy), on_bad="error")


def test_nan_features_name_file_and_video(synth_copy):
    path = synth_copy / "youtube/video_features/synth_b_001_rgb.npy"
    array = np.load(path).astype(np.float32)
    array[2, 3] = np.nan
    np.save(path, array)
    with pytest.raises(DataError, match=r"synth_b_001: NaN or Inf in 1 clip.*synth_b_001_rgb.npy"):
        load_dataset("youtube", str(synth_copy), on_bad="error")
    ds = load_dataset("youtube", str(synth_copy))
    assert "synth_b_001" not in ds.videos and ds.skipped[0].video_id == "synth_b_001"
    assert len(ds.videos) == SMALL_SYNTH.videos_per_domain * 2 - 1  # nothing else lost


def test_inf_features_are_refused(synth_copy):
    path = synth_copy / "youtube/audio_features/synth_a_000.npy"
    array = np.load(path).astype(np.float32)
    array[0, 0] = np.inf
    np.save(path, array)
    with pytest.raises(DataError, match="synth_a_000: NaN or Inf"):
        load_dataset("youtube", str(synth_copy), on_bad="error")


def test_mismatched_lengths_crop_to_shortest(synth_copy):
    path = synth_copy / "youtube/audio_features/synth_a_002.npy"
    audio = np.load(path)
    np.save(path, audio[:-2])
    ds = load_dataset("youtube", str(synth_copy))
    video = ds.videos["synth_a_002"]
    assert video.num_clips == len(audio) - 2
    assert len(video.visual) == len(video.audio) == len(video.match) == video.num_clips
    assert any("synth_a_002" in note and "cropped" in note for note in ds.notes)


def test_unknown_domain_is_an_error_naming_it(synth_root):
    with pytest.raises(DataError, match=r"unknown domain\(s\) \['skydiving'\].*synth_a"):
        load_dataset("youtube", str(synth_root), domains=["skydiving"])


def test_malformed_annotation_names_video_and_file(synth_copy):
    anno_path = synth_copy / "youtube/youtube_anno.json"
    anno = json.loads(anno_path.read_text())
    anno["synth_a_004"]["match"] = "yes"
    del anno["synth_b_002"]["match"]
    anno_path.write_text(json.dumps(anno))
    ds = load_dataset("youtube", str(synth_copy))
    reasons = {s.video_id: s for s in ds.skipped}
    assert set(reasons) == {"synth_a_004", "synth_b_002"}
    assert "malformed annotation" in reasons["synth_a_004"].reason
    assert reasons["synth_b_002"].path.endswith("youtube_anno.json")
    with pytest.raises(DataError, match="malformed annotation"):
        load_dataset("youtube", str(synth_copy), on_bad="error")


def test_truncated_feature_file_is_skipped(synth_copy):
    path = synth_copy / "youtube/video_features/synth_a_005_opt.npy"
    path.write_bytes(path.read_bytes()[:60])
    ds = load_dataset("youtube", str(synth_copy))
    assert [s.video_id for s in ds.skipped] == ["synth_a_005"]
    assert "unreadable" in ds.skipped[0].reason


def test_missing_root_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_dataset("youtube", str(tmp_path / "nowhere"))


def test_unset_env_var_in_root_is_named(monkeypatch):
    monkeypatch.delenv("HLP_NOT_SET", raising=False)
    with pytest.raises(FileNotFoundError, match="HLP_NOT_SET"):
        load_dataset("youtube", "${HLP_NOT_SET}/x")


def test_reads_from_s3(synth_root, s3_endpoint):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.mkdir("hlp-data")
    fs.put(str(synth_root) + "/", "hlp-data/release/", recursive=True)
    local = load_dataset("youtube", str(synth_root))
    remote = load_dataset("youtube", "s3://hlp-data/release")
    assert set(remote.videos) == set(local.videos)
    vid = sorted(local.videos)[0]
    np.testing.assert_array_equal(remote.videos[vid].visual, local.videos[vid].visual)
    np.testing.assert_array_equal(remote.videos[vid].match, local.videos[vid].match)


def test_validation_is_carved_from_training_by_video():
    ids = [f"v{i}" for i in range(10)]
    train, val = carve_validation(ids, 0.2, seed=0)
    assert len(val) == 2 and not set(train) & set(val) and set(train) | set(val) == set(ids)
    assert carve_validation(ids, 0.2, seed=0) == (train, val)  # by seed: reproducible
    assert carve_validation(ids, 0.2, seed=1) != (train, val)
    assert carve_validation(["a", "b"], 0.2, seed=0)[1] != []  # at least one val video
    assert carve_validation(["a"], 0.2, seed=0) == (["a"], [])


def test_umt_protocol_tests_on_published_val_list(synth_root):
    ds = load_dataset("youtube", str(synth_root))
    split = domain_split(ds, "umt", "synth_a", 0.25, seed=0)
    published = ds.splits["synth_a"]
    assert [v.video_id for v in split.test] == published["val"]
    assert {v.video_id for v in split.train + split.val} == set(published["train"])
    assert not {v.video_id for v in split.val} & set(published["val"])  # never selects on test


def test_domains_without_features_are_skipped_with_a_note(synth_root):
    ds = load_dataset("youtube", str(synth_root))
    ds.splits["skating"] = {"train": ["gone1", "gone2"], "val": ["gone3"]}
    usable, notes = available_domains(ds, "umt", None)
    assert usable == ["synth_a", "synth_b"]
    assert any("skating" in n for n in notes)


def test_top_half_labels():
    scores = np.array([[1, 1], [5, 5], [3, 3], [2, 2]], dtype=float)
    np.testing.assert_array_equal(top_half(scores), [False, True, True, False])


def test_paper_protocol_trains_on_two_longest(synth_root, tmp_path):
    ds = load_dataset("youtube", str(synth_root))
    ds.name = "tvsum"  # the paper protocol differs from UMT's only on TVSum
    videos = sorted(ds.domain_videos("synth_a"), key=lambda v: (-v.num_clips, v.video_id))
    assert set(training_ids(ds, "paper", "synth_a")) == {videos[0].video_id, videos[1].video_id}
    assert len(held_out_ids(ds, "paper", "synth_a")) == len(videos) - 2


def test_only_keys_that_change_the_read_keep_a_sweep_from_sharing_one_copy():
    """A sweep shares one loaded dataset across trials unless its space searches what is read."""
    assert not changes_read({"loss.margin": {}, "data.normalize": {}, "train.lr": {}})
    assert changes_read({"data.root": {}}) and changes_read(["data.domains"]) and changes_read(["data.visual_streams"])
    assert not changes_read({}) and not changes_read(["data"])
