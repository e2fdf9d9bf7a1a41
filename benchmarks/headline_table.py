"""Render the README's headline tables from `hlp train` outputs, beside the published numbers.

    python benchmarks/headline_table.py runs/youtube_co_av runs/youtube_cr_av runs/youtube_ce ...

Each argument is an output directory holding `metrics.json`; the column is named after the
directory. The published numbers are those of hlp/reproduce/published.py. `hlp reproduce` makes the
full report; this script renders single `hlp train` runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hlp.reproduce.published import PAPER_DOMAINS, UMT_DOMAINS

PAPER, UMT = PAPER_DOMAINS, UMT_DOMAINS


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
