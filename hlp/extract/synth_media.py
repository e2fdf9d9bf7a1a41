"""Small real mp4 files (H.264 + AAC) for tests and benchmarks of the media pipeline.

Highlight spans are bright, saturated frames over a loud tone; the rest is dark frames over
quiet noise, so visual and audio features differ between highlight and ordinary clips.
Files are written with `movflags=faststart` (index first), like most files served over
HTTP/S3, so a cut-off copy still opens and shows up as *truncated* rather than unreadable.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

AAC_FRAME = 1024  # samples per AAC frame; the encoder wants exactly this many
BrokenKind = Literal["truncated", "corrupt", "not_video", "empty"]


def write_test_video(
    path: str | Path,
    seconds: float,
    *,
    fps: int = 24,
    size: tuple[int, int] = (96, 128),
    audio: bool = True,
    highlights: Sequence[tuple[float, float]] = (),
    sample_rate: int = 44100,
    seed: int = 0,
) -> None:
    """Write `seconds` of H.264 video (`size` = (height, width)) and, optionally, AAC stereo."""
    height, width = size
    if height % 2 or width % 2:
        raise ValueError(f"size must be even for yuv420p, got {size}")
    rng = np.random.default_rng(seed)
    n_frames = round(seconds * fps)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vstream = out.add_stream("libx264", rate=fps, width=width, height=height)
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"preset": "ultrafast", "g": str(fps)}  # a keyframe each second
        astream = out.add_stream("aac", rate=sample_rate, layout="stereo") if audio else None
        if astream is not None:
            astream.options = {"aac_coder": "fast"}  # the default two-loop search is ~5x slower
        for i in range(n_frames):
            t = i / fps
            image = _frame(i, height, width, _inside(t, highlights), rng)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        if astream is not None:
            _write_audio(out, astream, seconds, sample_rate, highlights, rng)


def _inside(t: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(start <= t < end for start, end in spans)


def _frame(i: int, height: int, width: int, bright: bool, rng: np.random.Generator) -> np.ndarray:
    """A diagonal stripe pattern scrolling one pixel per frame, plus a little noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = ((xx + yy + 2 * i) // 8) % 2
    if bright:  # saturated orange/yellow stripes
        palette = np.array([[250, 200, 20], [240, 90, 10]], dtype=np.int16)
    else:  # dim grey-blue stripes
        palette = np.array([[30, 35, 50], [15, 18, 28]], dtype=np.int16)
    image = palette[stripes] + rng.integers(-6, 7, size=(height, width, 1), dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_audio(out, stream, seconds: float, rate: int, spans, rng: np.random.Generator) -> None:
    """A loud 440 Hz tone inside highlight spans, quiet noise elsewhere, in AAC-sized frames."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    signal = 0.01 * rng.standard_normal(n)
    loud = np.zeros(n, dtype=bool)
    for start, end in spans:
        loud |= (t >= start) & (t < end)
    signal[loud] = 0.6 * np.sin(2 * np.pi * 440.0 * t[loud])
    stereo = np.stack([signal, signal]).astype(np.float32)
    for offset in range(0, n, AAC_FRAME):
        block = stereo[:, offset : offset + AAC_FRAME]  # the last one may be short
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, offset, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def write_broken_video(path: str | Path, kind: BrokenKind, source: str | Path | None = None) -> None:
    """Write a damaged copy of the mp4 `source` (or a non-video) for error-path tests.

    truncated: the first half of the bytes; corrupt: the middle third overwritten with
    random bytes; not_video: a text file; empty: zero bytes.
    """
    if kind == "empty":
        Path(path).write_bytes(b"")
        return
    if kind == "not_video":
        Path(path).write_text("this is a text file, not a video\n" * 20)
        return
    if source is None:
        raise ValueError(f"kind {kind!r} needs a source video")
    data = bytearray(Path(source).read_bytes())
    if kind == "truncated":
        Path(path).write_bytes(bytes(data[: len(data) // 2]))
    elif kind == "corrupt":
        lo, hi = len(data) // 3, 2 * len(data) // 3
        data[lo:hi] = np.random.default_rng(0).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
        Path(path).write_bytes(bytes(data))
    else:
        raise ValueError(f"unknown kind {kind!r}")
