"""The original TVSum .mat against the UMT release's tvsum_anno.json, and malformed inputs."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from hlp.data.tvsum_mat import num_shots, read_tvsum_mat, shot_labels

# tvsum_anno.json counts one frame more than the .mat for these two videos; the clip
# scores still agree exactly, so the difference is in the frame count alone.
JSON_FRAMES_PLUS_ONE = {"WG0MBPpPC6I", "Se3oxnaPsz0"}


def _tvsum_dir() -> Path:
    root = os.environ.get("HLP_DATA_ROOT")
    if not root:
        pytest.skip("HLP_DATA_ROOT is unset; the real TVSum files are needed")
    tvsum = Path(root) / "tvsum"
    for name in ("ydata-tvsum50.mat", "tvsum_anno.json"):
        if not (tvsum / name).is_file():
            pytest.skip(f"{tvsum / name} is absent")
    return tvsum


@pytest.fixture(scope="module")
def real():
    tvsum = _tvsum_dir()
    with open(tvsum / "ydata-tvsum50.mat", "rb") as fileobj:  # file objects work, as for s3
        mat = read_tvsum_mat(fileobj)
    return mat, json.loads((tvsum / "tvsum_anno.json").read_text())


@pytest.mark.real_data
def test_shot_labels_equal_released_anno_for_all_videos(real):
    mat, anno = real
    assert set(mat) == set(anno) and len(mat) == 50
    for vid, entry in anno.items():
        expected = np.asarray(entry["anno"])
        assert num_shots(mat[vid].nframes, entry["fps"]) == len(expected), vid
        got = shot_labels(mat[vid].user_anno, entry["fps"], len(expected))
        assert np.array_equal(got, expected), vid


@pytest.mark.real_data
def test_category_and_nframes_agree(real):
    mat, anno = real
    for vid, entry in anno.items():
        video = mat[vid]
        assert video.category == entry["domain"] and video.user_anno.shape == (video.nframes, 20)
        extra = 1 if vid in JSON_FRAMES_PLUS_ONE else 0
        assert int(entry["frames"]) == video.nframes + extra, vid


@pytest.mark.real_data
def test_reads_from_a_path_too(real):
    mat, _ = real
    by_path = read_tvsum_mat(str(_tvsum_dir() / "ydata-tvsum50.mat"))
    assert by_path["AwmHb44_ouw"].title == mat["AwmHb44_ouw"].title


def test_not_hdf5_raises_value_error_naming_file(tmp_path):
    bogus = tmp_path / "bogus.mat"
    bogus.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(ValueError, match="bogus.mat"):
        read_tvsum_mat(str(bogus))


def test_missing_fields_raise_value_error_naming_file_and_field(tmp_path):
    path = tmp_path / "partial.mat"
    with h5py.File(path, "w") as f:
        f.create_group("other")
    with pytest.raises(ValueError, match="partial.mat.*tvsum50"):
        read_tvsum_mat(str(path))
    with h5py.File(path, "a") as f:
        f.create_group("tvsum50").create_dataset("video", data=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="partial.mat.*category"):
        read_tvsum_mat(str(path))


def test_shot_labels_rejects_too_many_shots():
    with pytest.raises(ValueError, match="frames"):
        shot_labels(np.ones((100, 20)), fps=25.0, num_clips=3)
