"""The report's figures as PNG: Figure 3 (t-SNE of eq. 7 embeddings), Figure 4 (score timelines)
and precision-recall curves per domain, all of the first seed's validation-selected models.

Each t-SNE panel also gets a number, the silhouette of highlight vs non-highlight segments in
the embedding space itself (t-SNE distorts distances), so "better separated" can be checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hlp.plots import pyplot, score_timelines
from hlp.reproduce.tables import FIGURE3_PANELS, Cell

plt = pyplot()  # the report draws several figures; the module is imported only by `hlp reproduce`

TIMELINE_VIDEOS = 2  # per domain, at most 8 panels


def make_figures(cells: list[Cell], store, datasets: dict, seed: int, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    panels = _tsne_panels(cells, store, seed)
    if panels:
        figures.append(tsne_figure(panels, out / "tsne.png", seed))
    for bench, info in datasets.items():
        # The paper's full model with its defaults (Table 1/2's CO-AV, also 3-5's last rows).
        cell = next((c for c in cells if c.benchmark.name == bench and not c.row.changes), None)
        result = store.load(f"{cell.config_key}-seed{seed}") if cell else None
        if result is None:
            continue
        videos = info["dataset"].videos
        figures.append(timeline_figure(result, videos, out / f"timelines_{bench}.png", bench, seed))
        figures.append(pr_figure(result, videos, out / f"pr_{bench}.png", bench, seed))
    return figures


def _tsne_panels(cells: list[Cell], store, seed: int) -> dict[str, dict]:
    by_place = {(c.table, c.row.key): c for c in cells if c.benchmark.dataset == "youtube"}
    panels = {}
    for place in FIGURE3_PANELS:
        cell = by_place.get(place)
        embeddings = store.embeddings(f"{cell.config_key}-seed{seed}") if cell else {}
        if embeddings:
            panels[cell.row.label] = embeddings
    return panels


def silhouette(x: np.ndarray, y: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    if len(set(y.tolist())) < 2:
        return None
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(silhouette_score(unit, y.astype(int)))


def tsne_figure(panels: dict[str, dict], path: Path, seed: int) -> dict:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    domains = sorted({d for p in panels.values() for d in p})
    fig, axes = plt.subplots(len(domains), len(panels), figsize=(3 * len(panels), 3 * len(domains)), squeeze=False)
    scores: dict[str, dict[str, float | None]] = {}
    for j, (label, embeddings) in enumerate(panels.items()):
        axes[0, j].set_title(label, fontsize=9)
        for i, domain in enumerate(domains):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(domain)
            if domain not in embeddings:
                continue
            x, y = embeddings[domain]["x"], embeddings[domain]["y"].astype(bool)
            scores.setdefault(label, {})[domain] = silhouette(x, y)
            # One thread: on a busy machine OpenMP's spinning threads made a 400-point t-SNE take 44 s
            # instead of 2 s (measured while a reproduction ran beside it).
            with threadpool_limits(1):
                points = TSNE(2, init="pca", random_state=seed, perplexity=min(30.0, len(x) - 1.0)).fit_transform(x)
            ax.scatter(*points[~y].T, s=3, c="tab:gray", alpha=0.5, label="not highlight")
            ax.scatter(*points[y].T, s=3, c="tab:red", alpha=0.7, label="highlight")
    axes[0, 0].legend(fontsize=6, loc="best", markerscale=3)
    fig.suptitle(f"t-SNE of eq. (7) test-segment embeddings (seed {seed})")
    _save(fig, path)
    return {"id": "tsne", "title": "Figure 3: t-SNE of test-segment embeddings (eq. 7), coloured by label",
            "path": f"figures/{path.name}", "tables": ["3"], "silhouette": scores}


def timeline_figure(result: dict, videos: dict, path: Path, bench: str, seed: int) -> dict:
    chosen = [vid for d in result["domains"].values() for vid in list(d["test_scores"])[:TIMELINE_VIDEOS]][:8]
    scores = {vid: np.asarray(s) for d in result["domains"].values() for vid, s in d["test_scores"].items()}
    score_timelines({vid: videos[vid].labels for vid in chosen}, scores, path,
                    f"{bench}: CO-AV test scores vs ground-truth highlights (seed {seed})")
    return {"id": f"timelines_{bench}", "title": f"Figure 4: score timelines, {bench} test videos",
            "path": f"figures/{path.name}", "tables": ["1" if bench.startswith("youtube") else "2"]}


def interpolated_pr(scores: np.ndarray, labels: np.ndarray, recall: np.ndarray) -> np.ndarray | None:
    """Precision at each recall level, interpolated (best precision at that recall or beyond)."""
    if not labels.any():
        return None
    hits = np.cumsum(labels[np.argsort(-scores, kind="stable")])
    rec, prec = hits / labels.sum(), hits / np.arange(1, len(labels) + 1)
    best = np.maximum.accumulate(prec[::-1])[::-1]
    return np.array([best[rec >= r].max() if (rec >= r).any() else 0.0 for r in recall])


def pr_figure(result: dict, videos: dict, path: Path, bench: str, seed: int) -> dict:
    recall = np.linspace(0, 1, 101)
    fig, ax = plt.subplots(figsize=(5, 4))
    for domain, d in result["domains"].items():
        curves = [interpolated_pr(np.asarray(s), videos[vid].labels, recall) for vid, s in d["test_scores"].items()]
        curves = [c for c in curves if c is not None]
        if curves:
            ax.plot(recall, np.mean(curves, axis=0), label=f"{domain} (test mAP {d['test_map']:.3f})")
    ax.set_xlabel("recall"), ax.set_ylabel("precision (interpolated, mean over videos)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(f"{bench}: CO-AV precision-recall per domain (seed {seed})", fontsize=9)
    _save(fig, path)
    return {"id": f"pr_{bench}", "title": f"Precision-recall per domain, {bench}", "path": f"figures/{path.name}",
            "tables": ["1" if bench.startswith("youtube") else "2"]}


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
