"""Paired comparisons of two configs that trained on the same seeds and were scored on the same
test videos: the question a reviewer asks of every ablation row.

Two sources of noise, two tools. Across seeds (initialisation, window sampling and the carved
validation split all follow the seed): a paired t-test on the per-seed domain mAPs. Across test
videos (a domain has 7-30 of them): a paired bootstrap that resamples videos, stratified by
domain, of the seed-averaged per-video AP difference; its 95 % interval decides the verdict.
"""

from __future__ import annotations

import math

import numpy as np

HOLDS, REVERSED, UNRESOLVED, TOO_FEW = "holds", "reversed", "not resolved", "too few test videos"
VERDICTS = (HOLDS, REVERSED, UNRESOLVED, TOO_FEW)


def paired_t_p(differences: list[float]) -> float | None:
    """Two-sided p of the paired t-test (None below 2 seeds or with no spread)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or np.allclose(d, d[0]):
        return None
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def bootstrap_interval(per_domain: dict[str, np.ndarray], resamples: int, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean over domains of each domain's mean per-video difference, resampling
    each domain's videos with replacement (domains keep their weight, as in the paper's average).

    A domain with one test video (TVSum's UMT split) has nothing to resample, which would give a
    zero-width interval; then the domains themselves are resampled. Fewer than 2 units: no interval.
    """
    rng = np.random.default_rng(seed)
    if min(len(d) for d in per_domain.values()) < 2:
        per_domain = {"domains": np.array([d.mean() for d in per_domain.values()])}
    if max(len(d) for d in per_domain.values()) < 2:
        return math.nan, math.nan
    draws = np.zeros(resamples)
    for diffs in per_domain.values():
        picks = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
        draws += diffs[picks].mean(axis=1)
    draws /= len(per_domain)
    tail = (1 - level) / 2
    return float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))


def verdict(low: float, high: float) -> str:
    if math.isnan(low):
        return TOO_FEW
    if low > 0:
        return HOLDS
    if high < 0:
        return REVERSED
    return UNRESOLVED


def compare(better: dict[str, dict[int, dict[str, float]]], worse: dict[str, dict[int, dict[str, float]]],
            resamples: int) -> dict:
    """`better`/`worse`: domain -> seed -> {video id: AP}. Seeds and videos present in both count.

    Returns the mean difference (better - worse) per domain and overall, per-seed differences,
    the paired t-test's p, the bootstrap interval and the verdict, per domain and overall.
    """
    domains = sorted(set(better) & set(worse))
    out: dict = {"domains": {}}
    video_diffs: dict[str, np.ndarray] = {}
    for d in domains:
        seeds = sorted(set(better[d]) & set(worse[d]))
        videos = sorted(set.intersection(*(set(better[d][s]) & set(worse[d][s]) for s in seeds))) if seeds else []
        if not videos:
            continue
        per_seed = [float(np.mean([better[d][s][v] - worse[d][s][v] for v in videos])) for s in seeds]
        video_diffs[d] = np.array([np.mean([better[d][s][v] - worse[d][s][v] for s in seeds]) for v in videos])
        low, high = bootstrap_interval({d: video_diffs[d]}, resamples)
        out["domains"][d] = {"diff": float(np.mean(per_seed)), "per_seed": per_seed, "t_p": paired_t_p(per_seed),
                             "ci95": [low, high], "verdict": verdict(low, high), "videos": len(videos)}
    if not video_diffs:
        return {**out, "diff": math.nan, "per_seed": [], "t_p": None, "ci95": [math.nan, math.nan],
                "verdict": "no data"}
    per_seed = np.mean([v["per_seed"] for v in out["domains"].values()], axis=0).tolist()
    low, high = bootstrap_interval(video_diffs, resamples)
    return {**out, "diff": float(np.mean(per_seed)), "per_seed": per_seed, "t_p": paired_t_p(per_seed),
            "ci95": [low, high], "verdict": verdict(low, high)}
