"""Reader for the original TVSum annotation file, ydata-tvsum50.mat (MATLAB v7.3 = HDF5).

The UMT release ships per-clip scores in tvsum_anno.json; reading the original per-frame
annotations lets the project check that file and derive labels without trusting it.
The file holds a `tvsum50` struct array: each field is a (50, 1) array of object references,
strings are uint16 char arrays, and matrices are stored transposed (MATLAB is column-major).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import h5py
import numpy as np

FIELDS = ("video", "category", "title", "nframes", "user_anno")


@dataclass(frozen=True)
class TvsumMatVideo:
    """One video's record; user_anno is (nframes, 20) per-frame scores (1-5) of 20 annotators."""

    video_id: str
    category: str
    title: str
    nframes: int
    user_anno: np.ndarray


def _name(source: str | BinaryIO) -> str:
    """A readable name for error messages, for paths and file objects alike."""
    return str(source) if isinstance(source, str) else str(getattr(source, "name", source))


def _open(source: str | BinaryIO) -> h5py.File:
    """Open as HDF5, turning a wrong format into a ValueError that names the file."""
    try:
        return h5py.File(source, "r")
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ValueError(f"{_name(source)}: not an HDF5 (MATLAB v7.3) file: {err}") from err


def _struct(f: h5py.File, name: str) -> h5py.Group:
    """The tvsum50 group, checked for every field the reader uses."""
    if "tvsum50" not in f:
        raise ValueError(f"{name}: missing field 'tvsum50'")
    group = f["tvsum50"]
    for field in FIELDS:
        if field not in group:
            raise ValueError(f"{name}: missing field 'tvsum50/{field}'")
    return group


def _text(f: h5py.File, ref: h5py.Reference) -> str:
    return "".join(map(chr, f[ref][()].ravel()))


def _video(f: h5py.File, group: h5py.Group, i: int, name: str) -> TvsumMatVideo:
    deref = {field: f[group[field][i, 0]] for field in FIELDS}
    nframes = int(deref["nframes"][()].item())
    user_anno = deref["user_anno"][()].T  # back to MATLAB's (nframes, 20)
    if user_anno.shape[0] != nframes:
        raise ValueError(f"{name}: user_anno of video {i} has shape {user_anno.shape}, "
                         f"expected {nframes} frames")
    return TvsumMatVideo(
        video_id=_text(f, group["video"][i, 0]),
        category=_text(f, group["category"][i, 0]),
        title=_text(f, group["title"][i, 0]),
        nframes=nframes,
        user_anno=user_anno,
    )


def read_tvsum_mat(source: str | BinaryIO) -> dict[str, TvsumMatVideo]:
    """All videos keyed by YouTube id; `source` is a path or a binary file object (e.g. fsspec)."""
    name = _name(source)
    with _open(source) as f:
        group = _struct(f, name)
        count = group["video"].shape[0]
        videos = [_video(f, group, i, name) for i in range(count)]
    return {v.video_id: v for v in videos}


def num_shots(nframes: int, fps: float, shot_seconds: float = 2.0) -> int:
    """Whole shots in the video; the partial tail shot is dropped, matching tvsum_anno.json."""
    return int(nframes // (shot_seconds * fps))


def shot_labels(
    user_anno: np.ndarray, fps: float, num_clips: int, shot_seconds: float = 2.0
) -> np.ndarray:
    """(num_clips, 20) scores: shot i takes the frame at its midpoint, int((i + 0.5) * 2 * fps).

    This rule reproduces tvsum_anno.json exactly for all 50 videos. The first frame of each
    shot does not: the .mat's shot boundaries sit up to a frame off the i * 2 s * fps grid
    (0-based frame 51, not 50, at 25 fps), so only a frame well inside the shot is safe.
    """
    user_anno = np.asarray(user_anno)
    frames = ((np.arange(num_clips) + 0.5) * shot_seconds * fps).astype(int)
    if num_clips and frames[-1] >= len(user_anno):
        raise ValueError(f"{num_clips} shots of {shot_seconds} s at {fps} fps need frame "
                         f"{frames[-1]}, but the video has {len(user_anno)} frames")
    return user_anno[frames]
