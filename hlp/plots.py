"""Figures people would rather look at than read, saved as PNG for MLflow.

Matplotlib is imported by the first figure, not with this module: a sweep trial imports this
module, and a trial that ASHA stops draws nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (CI and cluster nodes have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def score_timelines(labels: dict[str, np.ndarray], scores: dict[str, np.ndarray], path: str | Path,
                    title: str) -> Path:
    """Predicted score per clip against the ground-truth highlight spans, one panel per video id."""
    plt = pyplot()
    fig, axes = plt.subplots(len(labels), 1, figsize=(9, 1.8 * len(labels)), squeeze=False)
    for ax, (video_id, truth) in zip(axes[:, 0], labels.items()):
        clips = np.arange(len(truth))
        ax.fill_between(clips, 0, truth.astype(float), step="mid", alpha=0.25, color="tab:green",
                        label="highlight (label)")
        ax.plot(clips, scores[video_id], color="tab:blue", label="predicted score")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(video_id, fontsize=7)
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("clip")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
