"""Render the README's headline tables from `hlp train` outputs, beside the published numbers.

    python benchmarks/headline_table.py runs/youtube_co_av runs/youtube_cr_av runs/youtube_ce ...

Each argument is an output directory holding `metrics.json`; the column is named after the
directory. The published numbers come from ../shared/data/README.md (UMT-S) and the paper's
Tables 1-2 (the I3D column, "Ours*").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAPER = {
    "youtube": {"dog": 0.690, "gymnastics": 0.660, "parkour": 0.890, "skating": 0.741, "skiing": 0.690,
                "surfing": 0.811},
    "tvsum": {"VT": 0.908, "VU": 0.728, "GA": 0.846, "MS": 0.850, "PK": 0.783, "PR": 0.780, "FM": 0.728,
              "BK": 0.771, "BT": 0.895, "DS": 0.723},
}
UMT = {
    "youtube": {"dog": 0.6593, "gymnastics": 0.7520, "parkour": 0.8164, "skating": 0.7181, "skiing": 0.7227,
                "surfing": 0.8271},
    "tvsum": {"VT": 0.8754, "VU": 0.8151, "GA": 0.8822, "MS": 0.7881, "PK": 0.8142, "PR": 0.8696, "FM": 0.7596,
              "BK": 0.8689, "BT": 0.8442, "DS": 0.7963},
}


def table(runs: list[Path]) -> str:
    metrics = {run.name: json.loads((run / "metrics.json").read_text()) for run in runs}
    dataset = next(iter(metrics.values()))["dataset"]
    domains = list(next(iter(metrics.values()))["domains"])
    head = ["domain", *metrics, "paper (I3D)", "UMT-S"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in domains:
        cells = [f"{m['domains'][d]['test_map']:.3f} ± {m['domains'][d]['test_map_std']:.3f}" for m in metrics.values()]
        rows.append("| " + " | ".join([d, *cells, f"{PAPER[dataset][d]:.3f}", f"{UMT[dataset][d]:.3f}"]) + " |")
    mean = lambda ref: sum(ref[dataset][d] for d in domains) / len(domains)  # noqa: E731
    cells = [f"**{m['mean_test_map']:.3f}**" for m in metrics.values()]
    rows.append("| " + " | ".join(["mean (these domains)", *cells, f"{mean(PAPER):.3f}", f"{mean(UMT):.3f}"]) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table([Path(p) for p in sys.argv[1:]]))
