"""What `hlp predict` shows a person: the segment table and the timeline PNG, on a real video
(bigbuckbunny.mp4 under HLP_DATA_ROOT) and on synthetic scores, without training a model."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from matplotlib.image import imread
from rich.console import Console

from hlp.extract.synth_media import write_broken_video, write_test_video
from hlp.predict.frames import THUMBNAIL_WIDTH, frames_at
from hlp.predict.predict import merge, select
from hlp.predict.summary import segment_rows, segment_table
from hlp.predict.timeline import DPI, FIGSIZE, draw_timeline, write_timeline

BUNNY_SECONDS = 5.28


@pytest.fixture(scope="module")
def bunny() -> Path:
    path = Path(os.environ.get("HLP_DATA_ROOT", "/nonexistent")) / "media" / "bigbuckbunny.mp4"
    if not path.is_file():
        pytest.skip("HLP_DATA_ROOT is not set or holds no media/bigbuckbunny.mp4 (see README)")
    return path


def _result(scores: list[float], clip_seconds: float, duration: float, top_k: int) -> dict:
    """A `predict` result for these clip scores, selected and merged by predict's own functions."""
    scores = np.array(scores)
    start = np.arange(len(scores)) * clip_seconds
    end = np.minimum(start + clip_seconds, duration)
    segments = merge(select(scores, top_k, None), scores, start, end)
    return {"video_id": "bigbuckbunny", "domain": "demo", "duration_s": duration, "selection": {"top_k": top_k},
            "clips": [{"clip_index": i, "start_s": float(s), "end_s": float(e), "score": float(p)}
                      for i, (s, e, p) in enumerate(zip(start, end, scores))],
            "segments": [vars(segment) for segment in segments]}


def _shown_at(path: Path, t: float) -> np.ndarray:
    """The frame a player shows at `t`, from a plain decode of the whole file (no seeking)."""
    with av.open(str(path)) as container:
        shown = None
        for frame in container.decode(video=0):
            if frame.time > t:
                break
            shown = frame
        height = round(THUMBNAIL_WIDTH * shown.height / shown.width / 2) * 2
        return shown.reformat(width=THUMBNAIL_WIDTH, height=height, format="rgb24").to_ndarray()


def test_frames_by_seeking_are_the_frames_a_full_decode_shows(bunny):
    times = [0.5, 2.62, 4.9]
    grabbed = frames_at(bunny, times)
    for t, frame in zip(times, grabbed):
        assert frame.shape == (180, THUMBNAIL_WIDTH, 3)  # 1280 x 720 scaled down, aspect kept
        np.testing.assert_array_equal(frame, _shown_at(bunny, t))
    assert not np.array_equal(grabbed[0], grabbed[2])  # different moments, different pictures


def test_times_without_a_decodable_frame_give_none(tmp_path):
    whole = tmp_path / "whole.mp4"
    write_test_video(whole, 6.0)
    assert [f is None for f in frames_at(whole, [-1.0, 0.0, 5.9, 7.0])] == [True, False, False, True]
    cut = tmp_path / "cut.mp4"
    write_broken_video(cut, "truncated", source=whole)  # the index still claims 6 s
    assert [f is None for f in frames_at(cut, [0.5, 5.5])] == [False, True]


def _coloured_pixels(image: np.ndarray) -> int:
    """Pixels that are neither grey nor white: picture content, not axes and text."""
    rgb = image[..., :3]
    return int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.15).sum())


def test_timeline_png_shows_the_frames_scores_and_segments(bunny, tmp_path):
    result = _result([0.2, 0.9, 0.6], clip_seconds=2.0, duration=BUNNY_SECONDS, top_k=1)
    assert [s["clips"] for s in result["segments"]] == [[1]]
    with_frame = imread(write_timeline(result, bunny, tmp_path / "frame.png"))
    without = imread(draw_timeline(result, [None], tmp_path / "empty.png"))
    assert with_frame.shape[:2] == without.shape[:2] == (FIGSIZE[1] * DPI, FIGSIZE[0] * DPI)
    top = slice(0, with_frame.shape[0] // 3)  # the thumbnail row
    assert _coloured_pixels(with_frame[top]) > 5000 and _coloured_pixels(without[top]) < 100
    bottom = slice(with_frame.shape[0] // 2, None)  # the score curve and the shaded segment
    orange = np.abs(without[bottom][..., :3] - np.array([1.0, 0.85, 0.7])).max(axis=-1) < 0.06
    blue = np.abs(without[bottom][..., :3] - np.array([31, 119, 180]) / 255).max(axis=-1) < 0.06
    assert orange.sum() > 2000 and blue.sum() > 200


def test_a_timeline_with_no_segment_still_draws_the_scores(tmp_path):
    result = _result([0.1, 0.2], clip_seconds=2.0, duration=4.0, top_k=1)
    result["segments"] = []  # a threshold above every score
    image = imread(draw_timeline(result, [], tmp_path / "none.png"))
    assert image.shape[1] == FIGSIZE[0] * DPI and image.shape[0] < FIGSIZE[1] * DPI  # no thumbnail row


def test_segment_table_lists_segments_in_time_order_with_their_rank():
    result = _result([0.3, 0.8, 0.9, 0.1, 0.95, 0.2], clip_seconds=2.0, duration=11.5, top_k=3)
    assert segment_rows(result) == [("#2", "2.00", "6.00", "4.00", "0.850", "1-2"),
                                    ("#1", "8.00", "10.00", "2.00", "0.950", "4")]
    console = Console(record=True, width=120, file=open(os.devnull, "w"))
    console.print(segment_table(result))
    lines = console.export_text().splitlines()
    assert "bigbuckbunny (11.50 s): 3 clips chosen by top-k, 2 segments" in lines[0]
    shown = [tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in lines if line.startswith("│")]
    assert shown == segment_rows(result)
