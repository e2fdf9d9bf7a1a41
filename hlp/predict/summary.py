"""What `hlp predict` shows a person on stderr: the chosen segments as a table.

The JSON result stays the contract for programs; this is for reading. Segments are listed in
time order with their rank by mean score, the number the timeline's thumbnails carry.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def ranked(segments: list[dict]) -> list[int]:
    """Indices of `segments`, best mean score first; ties go to the earlier segment."""
    return sorted(range(len(segments)), key=lambda i: (-segments[i]["score"], segments[i]["start_s"]))


def segment_rows(result: dict) -> list[tuple[str, ...]]:
    """One row per segment, in time order: rank, start, end, duration, mean score, clips."""
    segments = result["segments"]
    rank = {index: position + 1 for position, index in enumerate(ranked(segments))}
    return [(f"#{rank[i]}", f"{s['start_s']:.2f}", f"{s['end_s']:.2f}", f"{s['end_s'] - s['start_s']:.2f}",
             f"{s['score']:.3f}", _clip_range(s["clips"])) for i, s in enumerate(segments)]


def _clip_range(clips: list[int]) -> str:
    """Merged clips are consecutive, so first-last says it all, however long the segment."""
    return str(clips[0]) if len(clips) == 1 else f"{clips[0]}-{clips[-1]}"


def segment_table(result: dict) -> Table:
    """The chosen segments of a `predict` result, with the video and the selection as title."""
    threshold = result["selection"].get("threshold")
    rule = "top-k" if threshold is None else f"score >= {threshold:g}"
    chosen = sum(len(s["clips"]) for s in result["segments"])
    title = Text(f"{result['video_id']} ({result['duration_s']:.2f} s): {chosen} clips chosen by {rule}, "
                 f"{len(result['segments'])} segments")  # Text: an id may hold brackets, not markup
    table = Table(title=title, title_justify="left")
    for name in ("rank", "start (s)", "end (s)", "duration (s)", "mean score", "clips"):
        table.add_column(name, justify="left" if name in ("rank", "clips") else "right")
    for row in segment_rows(result):
        table.add_row(*row)
    return table
