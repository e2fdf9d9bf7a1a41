"""`hlp predict --reel`: cut highlight segments of a video, video and audio, into one mp4.

Each segment is reached by a keyframe seek, so a long source is not decoded in full; video is
re-encoded with libx264 and audio with AAC onto one gapless timeline.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from hlp.extract.media import (
    AUDIO_LAG_S,
    EPS,
    MediaError,
    Source,
    declared_seconds,
    decoded_frames,
    open_container,
    video_stream,
)

AAC_FRAME = 1024  # samples per AAC frame, what the encoder takes



def write_reel(source: Source, segments: Sequence[tuple[float, float]], out: str | os.PathLike) -> float:
    """Cut the [start, end) `segments` of `source`, video and audio, into one mp4 at `out`.

    Video is re-encoded with libx264 at the source frame rate (yuv420p, even size) and audio,
    when the source has any, with AAC; timestamps run on across segments without gaps.
    Each segment is reached by a keyframe seek, so long sources are not decoded in full.
    Returns the reel's duration in seconds.
    """
    segments = [(float(start), float(end)) for start, end in segments]
    _check_segments(segments)
    container, size = open_container(source)
    with container:
        video = video_stream(container)
        audio = container.streams.audio[0] if container.streams.audio else None
        fps = Fraction(video.average_rate or video.guessed_rate or 25)
        declared = declared_seconds(container, video)
        if declared is not None and segments[-1][1] > declared + 1 / fps:
            start, end = segments[-1]
            raise MediaError(f"segment [{start:g}, {end:g}) s is outside the video (0 to {declared:.2f} s)")
        try:
            with av.open(os.fspath(out), "w", format="mp4", options={"movflags": "+faststart"}) as reel:
                writer = _ReelWriter(reel, video, audio, fps)
                for start, end in segments:
                    writer.segment(container, size, start, end)
                return writer.close()
        except BaseException:
            Path(out).unlink(missing_ok=True)  # no half-written reel left behind
            raise


def _check_segments(segments: list[tuple[float, float]]) -> None:
    if not segments:
        raise MediaError("no segments to cut")
    previous_end = 0.0
    for start, end in segments:
        if not 0 <= start < end:
            raise MediaError(f"segment [{start:g}, {end:g}) s is empty or negative")
        if start < previous_end - EPS:
            raise MediaError("segments must be sorted and must not overlap")
        previous_end = end


class _ReelWriter:
    """Encodes segments onto one timeline: video at constant fps, audio gapless and cut to
    each segment's video length so the two stay in sync."""

    def __init__(self, reel, video: av.VideoStream, audio: av.AudioStream | None, fps: Fraction):
        self.reel, self.video, self.audio, self.fps = reel, video, audio, fps
        self.origin = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
        self.size = (video.codec_context.width & ~1, video.codec_context.height & ~1)
        self.vout = reel.add_stream("libx264", rate=fps, width=self.size[0], height=self.size[1])
        self.vout.pix_fmt = "yuv420p"
        self.vout.options = {"preset": "veryfast", "crf": "20"}
        self.next_pts = 0  # next free video pts, in frames
        self.aout = None
        if audio is not None:
            self.rate = audio.codec_context.sample_rate
            self.layout = "stereo" if audio.codec_context.channels >= 2 else "mono"
            self.aout = reel.add_stream("aac", rate=self.rate, layout=self.layout)
            self.pending = np.zeros((2 if self.layout == "stereo" else 1, 0), np.float32)
            self.samples_out = 0  # samples handed to the audio timeline so far

    def segment(self, container, size: int | None, start: float, end: float) -> None:
        offset = math.floor((start + self.origin) / self.video.time_base)
        container.seek(int(offset), stream=self.video)
        sound = _SegmentAudio(self, start, end) if self.aout is not None else None
        base, first, last_t = self.next_pts, None, start
        streams = [self.video] + ([self.audio] if self.audio is not None else [])
        for frame in decoded_frames(container, streams, size):
            if frame.pts is None:
                continue
            t = frame.time - self.origin
            if isinstance(frame, av.AudioFrame):
                sound.add(frame, t)
                continue
            last_t = max(last_t, t)
            if start - EPS <= t < end - EPS:  # the output runs on from the segment's first frame
                first = t if first is None else first
                self._encode_frame(frame, base + round((t - first) * self.fps))
            if last_t >= end - EPS and (sound is None or sound.done or last_t > end + AUDIO_LAG_S):
                break
        if sound is not None and first is not None:
            due = round(self.next_pts / self.fps * self.rate) - self.samples_out  # to match the video
            self._encode_audio(sound.samples_from(first, due))

    def _encode_frame(self, frame: av.VideoFrame, pts: int) -> None:
        if pts < self.next_pts:  # two source frames on one output slot (variable frame rate)
            return
        image = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
        image.pts, image.time_base = pts, 1 / self.fps
        self.reel.mux(self.vout.encode(image))
        self.next_pts = pts + 1

    def _encode_audio(self, samples: np.ndarray) -> None:
        self.samples_out += samples.shape[1]
        self.pending = np.concatenate([self.pending, samples], axis=1)
        while self.pending.shape[1] >= AAC_FRAME:
            self._encode_block(self.pending[:, :AAC_FRAME])
            self.pending = self.pending[:, AAC_FRAME:]

    def _encode_block(self, block: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout=self.layout)
        frame.sample_rate, frame.time_base = self.rate, Fraction(1, self.rate)
        frame.pts = self.samples_out - self.pending.shape[1]
        self.reel.mux(self.aout.encode(frame))

    def close(self) -> float:
        if self.next_pts == 0:
            raise MediaError("the segments contain no video frames")
        self.reel.mux(self.vout.encode(None))
        if self.aout is not None:
            if self.pending.shape[1]:
                self._encode_block(self.pending)
            self.reel.mux(self.aout.encode(None))
        return float(self.next_pts / self.fps)


class _SegmentAudio:
    """One segment's source audio, resampled to the reel's format, placed by timestamp."""

    def __init__(self, writer: _ReelWriter, start: float, end: float):
        self.rate, self.origin = writer.rate, writer.origin
        self.lo = round(start * self.rate)
        channels = 2 if writer.layout == "stereo" else 1
        self.data = np.zeros((channels, round(end * self.rate) + AAC_FRAME - self.lo), np.float32)
        self.resampler = av.AudioResampler(format="fltp", layout=writer.layout, rate=self.rate)
        self.done = False

    def add(self, frame: av.AudioFrame, t: float) -> None:
        for out in self.resampler.resample(frame):
            at = round(((out.time - self.origin) if out.pts is not None else t) * self.rate) - self.lo
            samples = out.to_ndarray()
            a, b = max(at, 0), min(at + samples.shape[1], self.data.shape[1])
            if b > a:
                self.data[:, a:b] = samples[:, a - at : b - at]
            self.done = self.done or at + samples.shape[1] >= self.data.shape[1]

    def samples_from(self, t: float, count: int) -> np.ndarray:
        """`count` samples starting at time `t` (zeros where the source had none)."""
        at = max(round(t * self.rate) - self.lo, 0)
        out = self.data[:, at : at + count]
        return np.pad(out, ((0, 0), (0, count - out.shape[1]))) if out.shape[1] < count else out
