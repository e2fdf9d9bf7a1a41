"""Streaming decode of videos into fixed-length clips for feature extraction.

One demux pass decodes video and audio together, so an S3 object is read once. Only the
current clip's grid frames and a few seconds of audio are held, so memory does not grow with
the video's length. Broken inputs raise `MediaError` with a reason a person can act on.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Literal, Union

import av
import numpy as np

Source = Union[str, "os.PathLike[str]", IO[bytes]]

TRUNCATED_BELOW = 0.9  # decoded / declared duration under this means the file was cut off
AUDIO_LAG_S = 20.0  # stop waiting for audio this far behind the video; bounds buffered clips
EPS = 1e-6  # seconds; timestamps are rationals turned into floats


class MediaError(ValueError):
    """A video that cannot be used. The message is the reason; the caller adds which video."""


@dataclass(frozen=True)
class FrameContract:
    """What a visual extractor expects: grid fps, frames per clip, resize and centre crop."""

    fps: float
    frames: int
    resize: tuple[int, int]  # (height, width)
    crop: int

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.frames < 1 or self.crop < 1 or min(self.resize) < 1:
            raise ValueError(f"invalid frame contract {self}")
        if self.crop > min(self.resize):
            raise ValueError(f"crop {self.crop} is larger than resize {self.resize}")


@dataclass
class ClipChunk:
    """Up to `chunk_clips` consecutive clips, ready for batched model input."""

    clip_index: np.ndarray  # (n,) int64
    start_s: np.ndarray  # (n,) float64
    end_s: np.ndarray  # (n,) float64
    frames: np.ndarray  # (n, frames, crop, crop, 3) uint8 RGB
    audio: np.ndarray  # (n, round(clip_seconds * sample_rate)) float32 mono
    has_audio: bool
    last: bool


@dataclass
class _Clip:
    index: int
    start: float
    end: float
    frames: np.ndarray
    audio: np.ndarray | None = None


# ----------------------------------------------------------------------------- opening


def _size(source: Source) -> int | None:
    """Byte size without reading the data (a stat, or a seek on file-like objects)."""
    if isinstance(source, (str, os.PathLike)):
        return os.path.getsize(source)
    size = getattr(source, "size", None)
    if isinstance(size, int):
        return size
    try:
        position = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(position)
        return end
    except (AttributeError, OSError):
        return None


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def open_container(source: Source) -> tuple[av.container.InputContainer, int | None]:
    """The opened container and the file's byte size (None when it cannot be told)."""
    size = _size(source)
    if size == 0:
        raise MediaError("empty file (0 bytes)")
    try:
        return av.open(os.fspath(source) if isinstance(source, os.PathLike) else source, "r"), size
    except (FileNotFoundError, PermissionError):
        raise  # a storage problem, not a media one
    except av.FFmpegError as error:
        raise MediaError(f"not a video file: {_reason(error)}") from None


def video_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The first real video stream; cover art (attached pictures) does not count."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise MediaError("no video stream")


def declared_seconds(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The video duration the container claims (the video stream's own, when it has one)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None



# ----------------------------------------------------------------------------- decoding


def _cut_off(packet: av.Packet, size: int | None) -> bool:
    """A packet that the demuxer could only partly read because the file ends inside it."""
    if not packet.is_corrupt:
        return False
    return size is None or packet.pos is None or packet.pos + packet.size >= size


def decoded_frames(container, streams: list, size: int | None) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """Frames of `streams` in file order; a cut-off last packet ends decoding quietly so the
    caller can report truncation, while a bad packet mid-file is `corrupt`."""
    reached = 0.0
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as error:
            raise MediaError(f"corrupt: {_reason(error)} (demuxing after {reached:.2f} s)") from None
        try:
            frames = packet.decode()
        except av.FFmpegError as error:
            if _cut_off(packet, size):
                yield from _drain(streams)
                return
            where = f"{packet.stream.type} packet at {_packet_time(packet, reached):.2f} s"
            raise MediaError(f"corrupt: {_reason(error)} ({where})") from None
        reached = _packet_time(packet, reached)
        yield from frames


def _packet_time(packet: av.Packet, default: float) -> float:
    return float(packet.pts * packet.time_base) if packet.pts is not None else default


def _drain(streams: list) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """Best-effort flush of frames still inside the decoders after a cut-off packet."""
    for stream in streams:
        try:
            frames = stream.codec_context.decode(None)
        except av.FFmpegError:
            continue
        for frame in frames:
            frame.time_base = frame.time_base or stream.time_base  # the codec context has none
            yield frame


class _VideoClips:
    """Samples decoded frames on the fps grid (t_j = j / fps shows the latest frame with
    pts <= t_j) and closes a clip once a later frame proves all its grid times are seen."""

    def __init__(self, contract: FrameContract, clip_seconds: float, origin: float):
        self.contract, self.clip_seconds, self.origin = contract, clip_seconds, origin
        self.next_j = 0  # next grid index to fill
        self.clip = 0  # clip the next grid index belongs to
        self.grid: list[np.ndarray] = []  # grid frames of `self.clip` so far
        self.prev: av.VideoFrame | None = None
        self.prev_array: np.ndarray | None = None
        self.end = 0.0  # end of the latest frame: the decoded duration so far
        self.step = 0.0  # last known frame duration, for frames that carry none

    def push(self, frame: av.VideoFrame, default_step: float) -> list[_Clip]:
        t = frame.time - self.origin if frame.pts is not None else self.end
        step = float(frame.duration * frame.time_base) if frame.duration else (self.step or default_step)
        closed = self._fill(until=t) if self.prev is not None else []
        self.prev, self.prev_array, self.step = frame, None, step
        self.end = max(self.end, t + step)
        return closed

    def finish(self, duration: float, last_clip: str) -> list[_Clip]:
        """Close the remaining clips: full ones, plus the partial one when padding."""
        full = math.floor(duration / self.clip_seconds + EPS)
        count = full + (last_clip == "pad" and duration > full * self.clip_seconds + EPS)
        closed = self._fill(until=duration)
        while self.clip < count:
            closed.append(self._close(min((self.clip + 1) * self.clip_seconds, duration)))
        return [clip for clip in closed if clip.index < count]

    def _fill(self, until: float) -> list[_Clip]:
        closed = []
        fps, length = self.contract.fps, self.clip_seconds
        while self.next_j / fps < until - EPS:
            while math.floor(self.next_j / (fps * length) + 1e-9) > self.clip:
                closed.append(self._close((self.clip + 1) * length))
            self.grid.append(self._prev_rgb())
            self.next_j += 1
        return closed

    def _prev_rgb(self) -> np.ndarray:
        if self.prev_array is None:
            self.prev_array = _rgb(self.prev, self.contract)
        return self.prev_array

    def _close(self, end: float) -> _Clip:
        grid = self.grid or [self._prev_rgb()]  # no grid time inside: the frame shown in it
        frames = np.stack(centre_window(grid, self.contract.frames))
        clip = _Clip(self.clip, self.clip * self.clip_seconds, end, frames)
        self.grid, self.clip = [], self.clip + 1
        return clip


def centre_window(grid: Sequence[np.ndarray], frames: int) -> list[np.ndarray]:
    """The `frames` consecutive grid frames centred in the clip; short clips repeat the last."""
    if len(grid) >= frames:
        first = (len(grid) - frames) // 2
        return list(grid[first : first + frames])
    return list(grid) + [grid[-1]] * (frames - len(grid))


def _rgb(frame: av.VideoFrame, contract: FrameContract) -> np.ndarray:
    """swscale resize to the contract, then a numpy centre crop (a copy, so the frame can go)."""
    height, width = contract.resize
    image = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    top, left = (height - contract.crop) // 2, (width - contract.crop) // 2
    return np.ascontiguousarray(image[top : top + contract.crop, left : left + contract.crop])


class _AudioTrack:
    """Resampled mono samples from absolute index `start` (0 = video start) up to `end`."""

    GAP_S = 0.1  # a pts jump bigger than this is a real gap, filled with silence

    def __init__(self, rate: int, origin: float):
        self.rate, self.origin = rate, origin
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        self.start = self.end = None
        self.parts: list[np.ndarray] = []

    def push(self, frame: av.AudioFrame | None) -> None:
        try:
            resampled = self.resampler.resample(frame)
        except ValueError:  # the source changed layout or rate mid-stream: start afresh
            self.finish()
            self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            resampled = self.resampler.resample(frame)
        for out in resampled:
            self._add(out)

    def finish(self) -> None:
        for out in self.resampler.resample(None):
            self._add(out)

    def _add(self, frame: av.AudioFrame) -> None:
        samples = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        at = round((frame.time - self.origin) * self.rate) if frame.pts is not None else self.end
        if self.end is None:
            at = at or 0
            self.start = self.end = at
        elif at is not None and at - self.end > self.GAP_S * self.rate:
            self.parts.append(np.zeros(at - self.end, np.float32))
            self.end = at
        self.parts.append(samples)
        self.end += len(samples)

    def _joined(self) -> np.ndarray:
        if len(self.parts) != 1:
            self.parts = [np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)]
        return self.parts[0]

    def take(self, lo: int, hi: int, length: int) -> np.ndarray:
        """Samples [lo, hi) at the front of `length` zeros."""
        out = np.zeros(length, np.float32)
        if self.end is not None and min(hi, self.end) > max(lo, self.start):
            a, b = max(lo, self.start), min(hi, self.end)
            out[a - lo : b - lo] = self._joined()[a - self.start : b - self.start]
        return out

    def drop_before(self, index: int) -> None:
        if self.end is not None and index > self.start:
            cut = min(index, self.end) - self.start
            self.parts = [self._joined()[cut:].copy()]
            self.start += cut


# ----------------------------------------------------------------------------- clips


def iter_chunks(
    source: Source,
    *,
    clip_seconds: float,
    last_clip: Literal["pad", "drop"],
    contract: FrameContract,
    sample_rate: int = 32000,
    chunk_clips: int = 16,
) -> Iterator[ClipChunk]:
    """Yield the video's clips [k*L, (k+1)*L) in chunks, decoding in one streaming pass.

    Errors are `MediaError`s raised during iteration; a `corrupt` one can follow chunks
    already yielded. The final chunk has `last=True`.
    """
    if clip_seconds <= 0 or chunk_clips < 1 or sample_rate < 1:
        raise ValueError("clip_seconds, chunk_clips and sample_rate must be positive")
    if last_clip not in ("pad", "drop"):
        raise ValueError(f"last_clip must be 'pad' or 'drop', got {last_clip!r}")
    container, size = open_container(source)
    with container:
        yield from _chunks(container, size, clip_seconds, last_clip, contract, sample_rate, chunk_clips)


def _chunks(
    container: av.container.InputContainer,
    size: int | None,
    clip_seconds: float,
    last_clip: str,
    contract: FrameContract,
    sample_rate: int,
    chunk_clips: int,
) -> Iterator[ClipChunk]:
    video = video_stream(container)
    audio = container.streams.audio[0] if container.streams.audio else None
    video.thread_type = "AUTO"
    origin = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    rate = video.average_rate or video.guessed_rate or 25
    clips = _VideoClips(contract, clip_seconds, origin)
    track = _AudioTrack(sample_rate, origin) if audio is not None else None
    length = round(clip_seconds * sample_rate)
    waiting: deque[_Clip] = deque()  # video done, audio still arriving
    ready: list[_Clip] = []  # done; held until a later clip shows whether they end the video

    def hear(clip: _Clip, hi: int) -> None:
        lo = round(clip.start * sample_rate)
        clip.audio = track.take(lo, hi, length) if track else np.zeros(length, np.float32)
        if track:
            track.drop_before(round(clip.end * sample_rate))
        ready.append(clip)

    streams = [video] + ([audio] if audio is not None else [])
    for frame in decoded_frames(container, streams, size):
        if isinstance(frame, av.VideoFrame):
            waiting.extend(clips.push(frame, 1.0 / float(rate)))
        else:
            track.push(frame)
        while waiting and _audio_done(waiting[0], track, clips.end, sample_rate, length):
            clip = waiting.popleft()
            hear(clip, round(clip.start * sample_rate) + length)
        while len(ready) > chunk_clips:
            yield _pack(ready[:chunk_clips], track is not None, last=False)
            del ready[:chunk_clips]

    duration = clips.end
    _check_duration(duration, declared_seconds(container, video), clip_seconds, clips.prev is None)
    if track:
        track.finish()
    waiting.extend(clips.finish(duration, last_clip))
    end_sample = round(duration * sample_rate)
    for clip in waiting:
        hear(clip, min(round(clip.start * sample_rate) + length, end_sample))
    while ready:
        part = ready[:chunk_clips]
        del ready[:chunk_clips]
        yield _pack(part, track is not None, last=not ready)


def _audio_done(clip: _Clip, track: _AudioTrack | None, video_end: float, rate: int, length: int) -> bool:
    if track is None or video_end - clip.end > AUDIO_LAG_S:
        return True
    return track.end is not None and track.end >= round(clip.start * rate) + length


def _check_duration(duration: float, declared: float | None, clip_seconds: float, no_frames: bool) -> None:
    """Truncation first (it explains a short decode), then too short for one clip."""
    if declared and duration < TRUNCATED_BELOW * declared:
        raise MediaError(f"truncated: decoded {duration:.2f} s of {declared:.2f} s")
    if no_frames:
        raise MediaError("no decodable video frames")
    if duration < clip_seconds - EPS:
        raise MediaError(f"shorter than one clip ({duration:.2f} s < {clip_seconds:g} s)")


def _pack(clips: list[_Clip], has_audio: bool, last: bool) -> ClipChunk:
    return ClipChunk(
        clip_index=np.array([c.index for c in clips], np.int64),
        start_s=np.array([c.start for c in clips], np.float64),
        end_s=np.array([c.end for c in clips], np.float64),
        frames=np.stack([c.frames for c in clips]),
        audio=np.stack([c.audio for c in clips]),
        has_audio=has_audio,
        last=last,
    )
