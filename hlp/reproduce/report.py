"""From unit results to the report: every cell's mean ± std over seeds, the tables beside the
published numbers, and the paired test of each claim. `report.md` is rendered from the same
dict that is written as `report.json`, so the two cannot disagree.
"""

from __future__ import annotations

import math

import numpy as np

from hlp.data.datasets import grouped_skips
from hlp.evaluate.paired import compare
from hlp.reproduce.config import ReproduceConfig
from hlp.reproduce.published import PAPER_DOMAINS, UMT_DOMAINS, mean_over, paper_average
from hlp.reproduce.tables import CLAIMS, Cell, Table
from hlp.tracking import git_commit

SELECTIONS = ("val_selected", "test_selected")  # the honest number, and the optimistic one


def stat(values: list[float]) -> dict:
    """Mean, sample std (None below 2 seeds) and the values themselves."""
    vals = [float(v) for v in values]
    return {"mean": float(np.mean(vals)) if vals else None,
            "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None, "n": len(vals), "values": vals}


def cell_summary(cell: Cell, store, seeds: list[int], domains: list[str]) -> dict:
    results = {s: store.load(f"{cell.config_key}-seed{s}") for s in seeds}
    done = [s for s in seeds if results[s] is not None]
    per = {d: {sel: [results[s]["domains"][d]["test_map" if sel == "val_selected" else "oracle_test_map"]
                     for s in done] for sel in SELECTIONS} for d in domains}
    out = {
        "id": cell.id, "table": cell.table, "row": cell.row.key, "label": cell.row.label,
        "benchmark": cell.benchmark.name, "config_key": cell.config_key, "seeds": done,
        "failed": {str(s): store.error(f"{cell.config_key}-seed{s}") or "not run" for s in seeds if s not in done},
        "complete": len(done) == len(seeds),
        "domains": {d: {sel: stat(per[d][sel]) for sel in SELECTIONS} for d in domains},
        # Per seed, the mean over domains; then mean ± std of that over seeds.
        "mean": {sel: stat([float(np.mean([per[d][sel][i] for d in domains])) for i in range(len(done))])
                 for sel in SELECTIONS},
        "video_ap": {d: {s: results[s]["domains"][d]["video_ap"] for s in done} for d in domains},
    }
    out["metrics"] = _cell_metrics(out)
    return out


def _cell_metrics(cell: dict) -> dict[str, float]:
    metrics = {}
    for d, sels in cell["domains"].items():
        for sel, s in sels.items():
            if s["mean"] is not None:
                metrics[f"{sel}.test_map.{d}"] = s["mean"]
                if s["std"] is not None:
                    metrics[f"{sel}.test_map_std.{d}"] = s["std"]
    for sel, s in cell["mean"].items():
        if s["mean"] is not None:
            metrics[f"{sel}.mean_test_map"] = s["mean"]
    return metrics


def _diff(ours: float | None, ref: float | None) -> float | None:
    return None if ours is None or ref is None else ours - ref


def table_block(table, bench: str, dataset: str, cells: dict[str, dict], domains: list[str]) -> dict:
    """One table on one benchmark: each row's numbers beside the paper's and UMT's, with differences."""
    rows = []
    for row in table.rows:
        cell = cells.get(f"table{table.id}/{row.key}/{bench}")
        if cell is None:
            continue
        ours = cell["mean"]["val_selected"]["mean"]
        # Every row of Tables 1-2 is the full model (the sweep's best too); UMT has nothing else.
        full = table.per_domain or row.key == table.full_row
        paper = (mean_over(PAPER_DOMAINS[dataset], domains) if table.per_domain
                 else paper_average(table.id, row.key, dataset))
        umt = mean_over(UMT_DOMAINS[dataset], domains) if full else None
        entry = {"row": row.key, "label": row.label, "cell": cell["id"], "complete": cell["complete"],
                 "domains": cell["domains"], "mean": cell["mean"], "paper": paper, "umt": umt,
                 "diff_paper": _diff(ours, paper), "diff_umt": _diff(ours, umt)}
        if table.per_domain:
            entry["domain_refs"] = {d: _domain_refs(cell["domains"][d]["val_selected"]["mean"], dataset, d)
                                    for d in domains}
        rows.append(entry)
    return {"benchmark": bench, "dataset": dataset, "domains": domains, "rows": rows}


def _domain_refs(ours: float | None, dataset: str, domain: str) -> dict:
    paper, umt = PAPER_DOMAINS[dataset].get(domain), UMT_DOMAINS[dataset].get(domain)
    return {"paper": paper, "umt": umt, "diff_paper": _diff(ours, paper), "diff_umt": _diff(ours, umt)}


def claims(rc: ReproduceConfig, cells: dict[str, dict]) -> list[dict]:
    out = []
    for claim in CLAIMS:  # a claim whose table was not asked for has no cells
        for bench in rc.benchmarks:
            better = cells.get(f"table{claim.table}/{claim.better}/{bench.name}")
            worse = cells.get(f"table{claim.table}/{claim.worse}/{bench.name}")
            if better is None or worse is None:
                continue
            result = compare(better["video_ap"], worse["video_ap"], rc.bootstrap)
            out.append({"table": claim.table, "better": claim.better, "worse": claim.worse,
                        "statement": claim.statement, "benchmark": bench.name, **result})
    return out


def build_report(rc: ReproduceConfig, tables: list[Table], cells: list[Cell], store, datasets: dict,
                 wall_s: float, finished: list[dict]) -> dict:
    """`wall_s`: this invocation; `finished`: every run's result, whichever invocation made it."""
    exp = rc.experiment
    summaries = {c.id: cell_summary(c, store, exp.train.seeds, datasets[c.benchmark.name]["domains"]) for c in cells}
    shown = [{"id": t.id, "title": t.title, "per_domain": t.per_domain,
              "blocks": [table_block(t, b.name, b.dataset, summaries, datasets[b.name]["domains"])
                         for b in rc.benchmarks if b.dataset in t.datasets]} for t in tables]
    return {
        "name": rc.name, "git_commit": git_commit(),
        "trained_at": sorted({r.get("git_commit", "unrecorded") for r in finished}),
        "seeds": list(exp.train.seeds), "epochs": exp.train.epochs, "val_fraction": exp.data.val_fraction,
        "wall_s": wall_s, "task_s": sum(r["seconds"] for r in finished),
        "benchmarks": {b.name: {"dataset": b.dataset, "protocol": b.protocol, "domains": datasets[b.name]["domains"],
                                "skipped": grouped_skips(datasets[b.name]["dataset"].skipped)}
                       for b in rc.benchmarks},
        "tables": shown,
        "claims": claims(rc, summaries),
        "cells": [{k: v for k, v in s.items() if k != "video_ap"} for s in summaries.values()],
        "table_metrics": _table_metrics(shown),
        "figures": [],
    }


def _table_metrics(tables: list[dict]) -> dict[str, dict[str, float]]:
    """Each table's parent run: every row's mean per benchmark, so the UI compares them at a glance."""
    out: dict[str, dict[str, float]] = {}
    for table in tables:
        metrics = out.setdefault(table["id"], {})
        for block in table["blocks"]:
            for row in block["rows"]:
                for sel in SELECTIONS:
                    value = row["mean"][sel]["mean"]
                    if value is not None and not math.isnan(value):
                        metrics[f"{block['benchmark']}.{row['row']}.{sel}"] = value
    return out
