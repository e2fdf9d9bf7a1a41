"""Which videos a job reads: a glob, a directory, a `.txt` list, or an `s3://` prefix.

A video's id is its file name without the extension (the convention of the public releases),
so two inputs with the same name are refused up front rather than overwriting each other.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from hlp.storage import filesystem

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


class InputError(ValueError):
    """The inputs cannot be listed; the message names the pattern, list file or duplicates."""


@dataclass(frozen=True)
class VideoInput:
    video_id: str
    uri: str


def list_inputs(spec: str) -> list[VideoInput]:
    fs, path = filesystem(spec)
    protocol = "s3://" if spec.startswith("s3://") else ""
    if spec.endswith(".txt"):
        uris = _list_file(fs, path, spec)
    elif any(c in spec for c in "*?["):
        uris = [protocol + p for p in sorted(fs.glob(path))]
    elif fs.isdir(path):
        uris = [protocol + p for p in sorted(fs.find(path)) if p.lower().endswith(VIDEO_SUFFIXES)]
    elif fs.exists(path):
        uris = [spec]
    else:
        raise InputError(f"inputs {spec!r}: no such file, directory or prefix")
    if not uris:
        raise InputError(f"inputs {spec!r}: matched no video files")
    return _with_ids(uris, spec)


def _list_file(fs, path: str, spec: str) -> list[str]:
    if not fs.exists(path):
        raise InputError(f"inputs list file not found: {spec}")
    lines = [line.strip() for line in fs.cat_file(path).decode().splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    here = ("s3://" if spec.startswith("s3://") else "") + posixpath.dirname(path)
    return [e if "://" in e or e.startswith("/") else posixpath.join(here, e) for e in entries]  # relative to the list


def _with_ids(uris: list[str], spec: str) -> list[VideoInput]:
    seen: dict[str, str] = {}
    for uri in uris:
        video_id = posixpath.splitext(posixpath.basename(uri.rstrip("/")))[0]
        if video_id in seen:
            raise InputError(f"inputs {spec!r}: two videos share the id {video_id!r}: {seen[video_id]} and {uri}")
        seen[video_id] = uri
    return [VideoInput(vid, uri) for vid, uri in seen.items()]


@contextlib.contextmanager
def open_video(uri: str) -> Iterator[str | IO[bytes]]:
    """A local path as is (FFmpeg reads it fastest), anything else as a seekable fsspec file."""
    if "://" not in uri:
        yield uri
        return
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as handle:
        yield handle
