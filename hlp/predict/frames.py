"""Still frames of a video at a few times, for the thumbnails of `hlp predict`'s timeline.

Each time is reached by a keyframe seek and a short decode forward, so a long video, or an
`s3://` object read through a seekable file, is never decoded or downloaded in full for a
handful of pictures. A time with no decodable frame gives None, so one bad spot costs one
empty panel, not the whole figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import av
import numpy as np

from hlp.extract.media import (
    EPS,
    MediaError,
    Source,
    declared_seconds,
    decoded_frames,
    open_container,
    video_stream,
)

THUMBNAIL_WIDTH = 320  # pixels; enough to recognise a scene in a figure 1000 pixels wide


def frames_at(source: Source, times: Sequence[float], width: int = THUMBNAIL_WIDTH) -> list[np.ndarray | None]:
    """The frame on screen at each of `times` (seconds from the video's start) as an RGB array
    `width` pixels wide, or None where the video has no decodable frame at that time."""
    container, size = open_container(source)
    with container:
        video = video_stream(container)
        return [_frame_at(container, video, size, float(t), width) for t in times]


def _frame_at(container, video: av.VideoStream, size: int | None, t: float, width: int) -> np.ndarray | None:
    declared = declared_seconds(container, video)
    if t < 0 or (declared is not None and t > declared):
        return None
    origin = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    try:
        frame = _decode_until(container, video, size, t, origin)
    except (MediaError, av.FFmpegError):
        return None
    return None if frame is None else _thumbnail(frame, width)


def _decode_until(container, video: av.VideoStream, size: int | None, t: float, origin: float) -> av.VideoFrame | None:
    """The latest frame with a timestamp at or before `t` (the one a player shows then); the
    first frame after `t` when the seek landed past it."""
    container.seek(math.floor((t + origin) / video.time_base), stream=video)  # the keyframe at or before t
    shown = None
    for frame in decoded_frames(container, [video], size):
        if frame.pts is None:
            continue
        if frame.time - origin > t + EPS:
            return shown or frame
        shown = frame
    return shown


def _thumbnail(frame: av.VideoFrame, width: int) -> np.ndarray:
    """RGB, `width` wide, the frame's aspect ratio kept (height rounded to even for swscale)."""
    height = max(2, round(width * frame.height / frame.width / 2) * 2)
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
