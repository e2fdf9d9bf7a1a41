"""`hlp predict`'s timeline PNG: what the model thought of every moment, and what it picked.

The per-clip score runs along the video in seconds with the chosen segments shaded; above it,
a frame from the middle of each of the best few segments, so a person sees at a glance
whether the picks are the moments they would have picked. Matplotlib is imported by the
drawing, not with this module, as in `hlp.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hlp.extract.media import Source
from hlp.predict.frames import frames_at
from hlp.predict.summary import ranked

MAX_THUMBNAILS = 4  # more would shrink each below recognition at the figure's width
SEGMENT_COLOUR = "tab:orange"
FIGSIZE = (10, 5)  # inches; 1000 x 500 pixels at the 100 dpi it is saved with
DPI = 100


def write_timeline(result: dict, source: Source, path: str | os.PathLike) -> Path:
    """Draw `result` (from `predict`) with thumbnails decoded from `source`, the same video."""
    best = best_segments(result)
    thumbnails = frames_at(source, [(s["start_s"] + s["end_s"]) / 2 for s in best])
    return draw_timeline(result, thumbnails, path)


def best_segments(result: dict) -> list[dict]:
    """The segments that get a thumbnail: the best by mean score, at most MAX_THUMBNAILS."""
    segments = result["segments"]
    return [segments[i] for i in ranked(segments)[:MAX_THUMBNAILS]]


def draw_timeline(result: dict, thumbnails: Sequence[np.ndarray | None], path: str | os.PathLike) -> Path:
    """The figure for `result`; `thumbnails[i]` shows the i-th of `best_segments(result)` (None:
    an empty panel). Returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")  # headless: servers and CI have no display
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=FIGSIZE if thumbnails else (FIGSIZE[0], 3.2))
    # MAX_THUMBNAILS columns whatever the count, so one thumbnail is as small as four.
    grid = fig.add_gridspec(2 if thumbnails else 1, MAX_THUMBNAILS, height_ratios=[0.8, 1] if thumbnails else None)
    aspect = next((image.shape[0] / image.shape[1] for image in thumbnails if image is not None), 9 / 16)
    for column, (segment, image) in enumerate(zip(best_segments(result), thumbnails)):
        _thumbnail_panel(fig.add_subplot(grid[0, column]), column + 1, segment, image, aspect)
    _score_panel(fig.add_subplot(grid[-1, :]), result)
    fig.suptitle(f"{result['video_id']}: highlight score per clip ({result['domain']} model)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _thumbnail_panel(ax, rank: int, segment: dict, image: np.ndarray | None, aspect: float) -> None:
    if image is None:  # shaped like the others, so a missing frame does not reflow the row
        ax.set_box_aspect(aspect)
        ax.text(0.5, 0.5, "no frame", ha="center", va="center", color="grey", transform=ax.transAxes)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"#{rank}  {segment['start_s']:.1f}-{segment['end_s']:.1f} s  ({segment['score']:.2f})",
                 fontsize=9)


def _score_panel(ax, result: dict) -> None:
    clips = result["clips"]
    scores = np.array([c["score"] for c in clips])
    edges = [c["start_s"] for c in clips] + [clips[-1]["end_s"]]
    _shade_segments(ax, result["segments"], edges[-1])
    ax.stairs(scores, edges, baseline=None, color="tab:blue", lw=1.5, label="score per clip")
    threshold = result["selection"].get("threshold")
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"threshold {threshold:g}")
    low, high = min(0.0, scores.min()), max(1.0, scores.max())
    ax.set_ylim(low, high + 0.05 * (high - low))
    ax.set_xlim(0, edges[-1])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score")
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], _segment_patch()], loc="upper left",
              bbox_to_anchor=(1.005, 1), fontsize=8)  # beside the axes: never over the curve


def _shade_segments(ax, segments: list[dict], end_s: float) -> None:
    """Each segment shaded; the best ones numbered like their thumbnails above."""
    for rank, index in enumerate(ranked(segments), start=1):
        segment = segments[index]
        ax.axvspan(segment["start_s"], segment["end_s"], color=SEGMENT_COLOUR, alpha=0.3, lw=0)
        middle = (segment["start_s"] + segment["end_s"]) / 2
        if rank <= MAX_THUMBNAILS and middle <= end_s:
            ax.annotate(f"#{rank}", (middle, 1), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                        fontsize=8, annotation_clip=False)


def _segment_patch():
    from matplotlib.patches import Patch

    return Patch(color=SEGMENT_COLOUR, alpha=0.3, label="chosen segments")


def beside(json_path: str | os.PathLike) -> Path:
    """Where the timeline of `--out X.json` goes: X.timeline.png, next to the result it draws."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + ".timeline.png")
