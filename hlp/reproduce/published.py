"""Published numbers that our runs are compared with, each with its source.

- PAPER: the seed paper (../shared/paper/hpcl-paper.txt). Tables 1 and 2 per domain, the
  "Ours*" column (I3D visual features, the features in ../shared/data); Tables 3-5 give
  averages only, over all six YouTube domains and all ten TVSum categories, under the paper's
  TVSum protocol (2 longest videos train, 3 test).
- UMT: UMT-S on exactly these features, from ../shared/data/README.md (UMT's README), under
  the published UMT splits. UMT has no ablations: it is the reference for the full model.
"""

from __future__ import annotations

PAPER_DOMAINS: dict[str, dict[str, float]] = {
    "youtube": {"dog": 0.690, "gymnastics": 0.660, "parkour": 0.890, "skating": 0.741, "skiing": 0.690,
                "surfing": 0.811},
    "tvsum": {"VT": 0.908, "VU": 0.728, "GA": 0.846, "MS": 0.850, "PK": 0.783, "PR": 0.780, "FM": 0.728,
              "BK": 0.771, "BT": 0.895, "DS": 0.723},
}

UMT_DOMAINS: dict[str, dict[str, float]] = {
    "youtube": {"dog": 0.6593, "gymnastics": 0.7520, "parkour": 0.8164, "skating": 0.7181, "skiing": 0.7227,
                "surfing": 0.8271},
    "tvsum": {"VT": 0.8754, "VU": 0.8151, "GA": 0.8822, "MS": 0.7881, "PK": 0.8142, "PR": 0.8696, "FM": 0.7596,
              "BK": 0.8689, "BT": 0.8442, "DS": 0.7963},
}

# Tables 3-5: (table, row) -> dataset -> the paper's average over all its domains.
PAPER_AVERAGES: dict[tuple[str, str], dict[str, float]] = {
    ("3", "v_only"): {"youtube": 0.659, "tvsum": 0.763},
    ("3", "a_only"): {"youtube": 0.651, "tvsum": 0.752},
    ("3", "av"): {"youtube": 0.675, "tvsum": 0.784},
    ("3", "cr_av"): {"youtube": 0.697, "tvsum": 0.789},
    ("3", "co_av"): {"youtube": 0.747, "tvsum": 0.801},
    ("4", "ce"): {"youtube": 0.702, "tvsum": 0.766},
    ("4", "ce_hpcl"): {"youtube": 0.733, "tvsum": 0.792},
    ("4", "ce_hpcl_rank"): {"youtube": 0.747, "tvsum": 0.801},
    ("5", "none"): {"youtube": 0.710, "tvsum": 0.789},
    ("5", "random"): {"youtube": 0.744, "tvsum": 0.803},
    ("5", "mean"): {"youtube": 0.747, "tvsum": 0.801},
}


def paper_average(table: str, row: str, dataset: str) -> float | None:
    return PAPER_AVERAGES.get((table, row), {}).get(dataset)


def mean_over(values: dict[str, float], domains: list[str]) -> float | None:
    """A published per-domain table averaged over the same domains as ours (None if one is missing)."""
    picked = [values[d] for d in domains if d in values]
    return sum(picked) / len(picked) if picked and len(picked) == len(domains) else None
