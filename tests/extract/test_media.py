"""Streaming clip decoding, its error reasons, and reel cutting, on real H.264/AAC files."""

from __future__ import annotations

import os
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hlp.extract.media import (
    FrameContract,
    MediaError,
    centre_window,
    iter_chunks,
)
from hlp.extract.synth_media import write_broken_video, write_test_video
from hlp.predict.reel import write_reel

CONTRACT = FrameContract(fps=8, frames=16, resize=(64, 85), crop=56)
HIGHLIGHT = (2.0, 4.0)  # clip 1 of 2-second clips


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    paths = {name: root / f"{name}.mp4" for name in ("five", "silent", "short", "audio_only")}
    write_test_video(paths["five"], 5.0, highlights=[HIGHLIGHT])
    write_test_video(paths["silent"], 5.0, audio=False)
    write_test_video(paths["short"], 1.5)
    _write_audio_only(paths["audio_only"])
    for kind in ("truncated", "corrupt", "not_video", "empty"):
        paths[kind] = root / f"{kind}.mp4"
        write_broken_video(paths[kind], kind, source=paths["five"])
    return paths


@pytest.fixture(scope="module")
def bunny() -> Path:
    root = os.environ.get("HLP_DATA_ROOT")
    path = Path(root or ".") / "media" / "bigbuckbunny.mp4"
    if not root or not path.is_file():
        pytest.skip("HLP_DATA_ROOT is not set or holds no media/bigbuckbunny.mp4")
    return path


def _write_audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        for offset in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, offset, Fraction(1, 16000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _chunks(source, last_clip="pad", **kwargs) -> list:
    kwargs.setdefault("contract", CONTRACT)
    return list(iter_chunks(source, clip_seconds=2.0, last_clip=last_clip, **kwargs))


def _concat(chunks, field: str) -> np.ndarray:
    return np.concatenate([getattr(chunk, field) for chunk in chunks])


def _decoded_seconds(path: Path) -> float:
    """End of the last video frame, decoded independently of the module under test."""
    with av.open(str(path)) as container:
        last = None
        for last in container.decode(video=0):
            pass
        return float((last.pts + last.duration) * last.time_base)


# ----------------------------------------------------------------------------- clips


def test_pad_keeps_the_partial_last_clip(videos):
    chunks = _chunks(videos["five"], "pad")
    assert _concat(chunks, "clip_index").tolist() == [0, 1, 2]
    assert _concat(chunks, "start_s").tolist() == [0.0, 2.0, 4.0]
    assert _concat(chunks, "end_s") == pytest.approx([2.0, 4.0, 5.0], abs=1e-6)
    frames = _concat(chunks, "frames")
    # clip 2 = [4, 5) holds 8 grid frames at 8 fps; the model's 16 repeat the last one
    assert all(np.array_equal(frames[2, i], frames[2, 7]) for i in range(8, 16))
    assert not np.array_equal(frames[2, 0], frames[2, 7])  # the pattern moves


def test_drop_discards_the_partial_last_clip(videos):
    chunks = _chunks(videos["five"], "drop", chunk_clips=2)
    assert [c.clip_index.tolist() for c in chunks] == [[0, 1]]
    assert chunks[0].last  # known to be last although it filled a whole chunk
    assert chunks[0].end_s.tolist() == [2.0, 4.0]


def test_chunking_and_shapes(videos):
    chunks = _chunks(videos["five"], "pad", chunk_clips=2)
    assert [len(c.clip_index) for c in chunks] == [2, 1]
    assert [c.last for c in chunks] == [False, True]
    first = chunks[0]
    assert first.clip_index.dtype == np.int64 and first.start_s.dtype == np.float64
    assert first.frames.shape == (2, 16, 56, 56, 3) and first.frames.dtype == np.uint8
    assert first.audio.shape == (2, 64000) and first.audio.dtype == np.float32
    assert first.has_audio


def test_highlight_clips_are_brighter_and_louder(videos):
    chunks = _chunks(videos["five"])
    brightness = _concat(chunks, "frames").mean(axis=(1, 2, 3, 4))
    rms = np.sqrt((_concat(chunks, "audio") ** 2).mean(axis=1))
    assert brightness[1] > 2 * max(brightness[0], brightness[2])
    assert rms[1] > 10 * max(rms[0], rms[2])
    assert 0 < rms[0] and np.abs(_concat(chunks, "audio")).max() <= 1.0


def test_last_clip_audio_is_zero_after_the_video_ends(videos):
    audio = _concat(_chunks(videos["five"]), "audio")
    assert np.abs(audio[2, : 32000 - 400]).max() > 0  # [4, 5) s has sound (minus codec edges)
    assert not audio[2, 32000:].any()  # [5, 6) s is padding


def test_video_without_audio_gives_zero_audio(videos):
    chunks = _chunks(videos["silent"])
    assert not any(c.has_audio for c in chunks)
    audio = _concat(chunks, "audio")
    assert audio.shape == (3, 64000) and not audio.any()


def test_file_like_source_matches_path(videos):
    with open(videos["five"], "rb") as handle:
        from_handle = _chunks(handle)
    from_path = _chunks(videos["five"])
    assert np.array_equal(_concat(from_handle, "frames"), _concat(from_path, "frames"))
    assert np.array_equal(_concat(from_handle, "audio"), _concat(from_path, "audio"))


def test_centre_window():
    grid = [np.full(1, i) for i in range(20)]
    assert [int(a[0]) for a in centre_window(grid, 16)] == list(range(2, 18))
    assert [int(a[0]) for a in centre_window(grid[:5], 8)] == [0, 1, 2, 3, 4, 4, 4, 4]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty", r"^empty file \(0 bytes\)$"),
        ("not_video", r"^not a video file: "),
        ("audio_only", r"^no video stream$"),
        ("truncated", r"^truncated: decoded \d+\.\d\d s of 5\.00 s$"),
        ("corrupt", r"^corrupt: .* at \d+\.\d\d s\)$"),
        ("short", r"^shorter than one clip \(1\.50 s < 2 s\)$"),
    ],
)
@pytest.mark.parametrize("last_clip", ["pad", "drop"])
def test_broken_inputs_name_the_problem(videos, name, reason, last_clip):
    with pytest.raises(MediaError, match=reason):
        _chunks(videos[name], last_clip)


def test_memory_stays_per_chunk(tmp_path):
    path = tmp_path / "long.mp4"
    write_test_video(path, 120.0, fps=12, size=(48, 64), sample_rate=16000)
    contract = FrameContract(fps=8, frames=16, resize=(112, 149), crop=112)
    whole_video = 60 * (16 * 112 * 112 * 3 + 64000 * 4)  # ~51 MB if all clips were held
    tracemalloc.start()
    try:
        sizes = []
        for chunk in iter_chunks(path, clip_seconds=2.0, last_clip="pad", contract=contract, chunk_clips=4):
            sizes.append(len(chunk.clip_index))
            assert chunk.frames.shape[0] == chunk.audio.shape[0] == sizes[-1]
            del chunk
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sizes == [4] * 15
    assert peak < whole_video / 3, f"peak {peak / 1e6:.1f} MB"


def test_bigbuckbunny_clips(bunny):
    duration = _decoded_seconds(bunny)
    assert duration == pytest.approx(5.3, abs=0.05)
    chunks = _chunks(bunny, "pad")
    assert _concat(chunks, "clip_index").tolist() == [0, 1, 2]
    assert _concat(chunks, "end_s") == pytest.approx([2.0, 4.0, duration], abs=1e-6)
    assert all(c.has_audio for c in chunks)
    assert np.sqrt((_concat(chunks, "audio") ** 2).mean(axis=1)).min() > 1e-3
    assert len(_concat(_chunks(bunny, "drop"), "clip_index")) == 2


# ----------------------------------------------------------------------------- reels


def _read_reel(path: Path) -> tuple[list[int], np.ndarray, int]:
    with av.open(str(path)) as container:
        assert container.streams.video and container.streams.audio
        rate = container.streams.audio[0].rate
        pts = [frame.pts for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])
    return pts, audio, rate


def test_reel_of_a_test_video(videos, tmp_path):
    out = tmp_path / "reel.mp4"
    seconds = write_reel(videos["five"], [(0.5, 1.5), (2.0, 3.5)], out)
    assert seconds == pytest.approx(2.5, abs=1 / 24)
    pts, audio, rate = _read_reel(out)
    assert len(pts) == 60
    assert len(set(np.diff(pts))) == 1  # continuous across the cut
    assert len(audio) / rate == pytest.approx(seconds, abs=0.05)
    quiet, loud = audio[: int(0.9 * rate)], audio[int(1.1 * rate) : int(2.4 * rate)]
    assert np.sqrt((loud**2).mean()) > 10 * np.sqrt((quiet**2).mean())  # the highlight follows the cut


def test_reel_of_bigbuckbunny(bunny, tmp_path):
    out = tmp_path / "bunny_reel.mp4"
    seconds = write_reel(bunny, [(0.0, 1.0), (3.0, 4.5)], out)
    assert seconds == pytest.approx(2.5, abs=0.05)
    pts, audio, rate = _read_reel(out)
    assert len(pts) / 25 == pytest.approx(seconds, abs=1e-6)
    assert len(audio) / rate == pytest.approx(seconds, abs=0.05)


def test_reel_without_audio(videos, tmp_path):
    out = tmp_path / "silent_reel.mp4"
    assert write_reel(videos["silent"], [(1.0, 2.0)], out) == pytest.approx(1.0, abs=1 / 24)
    with av.open(str(out)) as container:
        assert len(container.streams.video) == 1 and not container.streams.audio


@pytest.mark.parametrize(
    "segments, reason",
    [
        ([], "no segments"),
        ([(4.0, 6.0)], "outside the video"),
        ([(2.0, 1.0)], "empty or negative"),
        ([(1.0, 3.0), (2.0, 4.0)], "sorted"),
    ],
)
def test_reel_rejects_bad_segments(videos, tmp_path, segments, reason):
    with pytest.raises(MediaError, match=reason):
        write_reel(videos["five"], segments, tmp_path / "bad.mp4")
