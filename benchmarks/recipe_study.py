"""The recipe study: each recipe choice ablated on several seeds, chosen on validation only.

    python benchmarks/recipe_study.py benchmarks/recipe_study.yaml --out runs/study [--jobs 2]
    python benchmarks/recipe_study.py benchmarks/recipe_study.yaml --out runs/study --report

Every (arm, benchmark, seed) trains in-process (`train.loop.fit`, no Ray, no MLflow: a study
needs many short runs) and lands in OUT/units/<arm>-<benchmark>-seed<N>.json as it finishes, so
an interrupted study resumes where it stopped. `--report` prints, per benchmark, each arm's
mean validation mAP (what decides), and its test mAP (reported once, never used to choose),
with the paired difference to the reference arm per seed. Defaults are read off the validation
column; the test column only says whether the choice held.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml


def _config(base: str, overrides: list[str]):
    from hlp.config import load_config, with_absolute_paths

    return with_absolute_paths(load_config(base, ["train.threads=1", "tracking.enabled=false", *overrides]))


def run_unit(arm: str, bench: str, base: str, overrides: list[str], seed: int, path: str) -> str:
    """Train one arm on one benchmark for one seed; write its per-domain result file."""
    import torch

    from hlp.evaluate.evaluation import video_map
    from hlp.train.loop import fit
    from hlp.train.runs import load_splits

    torch.set_num_threads(1)
    cfg = _config(base, overrides)
    splits = load_splits(cfg, seed)
    start = time.perf_counter()
    results = fit(splits, cfg, seed, track_test=True)
    out = {"arm": arm, "benchmark": bench, "seed": seed, "overrides": overrides,
           "seconds": time.perf_counter() - start, "domains": {}}
    for d, r in results.items():
        out["domains"][d] = {
            "val_map": r.val_map, "test_map": r.test_map, "best_epoch": r.best_epoch, "scoring": r.scoring,
            "oracle_test_map": r.test_selected_map,
            "video_ap": {v.video_id: video_map(v, r.test_scores[v.video_id]) for v in splits[d].test},
        }
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(out, indent=1))
    os.replace(tmp, path)
    return path


def _flat(items: list) -> list[str]:
    """Arms may start from a YAML anchor (`[*std, key=value]`), which nests a list."""
    return [x for item in items for x in (_flat(item) if isinstance(item, list) else [item])]


def plan(study: dict, out: Path, seeds: list[int] | None = None) -> list[tuple]:
    units = []
    for bench, spec in study["benchmarks"].items():
        for arm, overrides in study["arms"].items():
            if arm in spec.get("skip", []):
                continue
            for seed in seeds or study.get("seeds", [0, 1, 2]):
                path = out / "units" / f"{arm}-{bench}-seed{seed}.json"
                units.append((arm, bench, spec["config"], [*spec.get("set", []), *_flat(overrides)], seed, str(path)))
    return units


def report(study: dict, out: Path, reference: str | None = None) -> str:
    from hlp.evaluate.paired import compare

    ref = reference or study.get("reference", next(iter(study["arms"])))
    lines = []
    for bench in study["benchmarks"]:
        rows = {}
        for arm in study["arms"]:
            units = [json.loads(p.read_text()) for p in sorted((out / "units").glob(f"{arm}-{bench}-seed*.json"))]
            if units:
                rows[arm] = {u["seed"]: u for u in units}
        if not rows:
            continue
        lines += [f"## {bench}", "", f"reference arm: {ref}; val = selected epochs' validation mAP (decides), "
                  "test = scored once (reported), oracle = test-selected (optimistic)", "",
                  "| arm | seeds | val | test | oracle | val diff vs ref (per seed) | test diff vs ref [95% CI] | s/run |",
                  "|---|---|---|---|---|---|---|---|"]
        for arm, units in rows.items():
            mean = lambda key, us: float(np.mean([np.mean([d[key] for d in u["domains"].values()]) for u in us]))  # noqa: E731
            us = list(units.values())
            val, test, oracle = mean("val_map", us), mean("test_map", us), mean("oracle_test_map", us)
            diff = ""
            if arm != ref and ref in rows:
                seeds = sorted(set(units) & set(rows[ref]))
                dv = [mean("val_map", [units[s]]) - mean("val_map", [rows[ref][s]]) for s in seeds]
                aps = lambda u: {d: {s: u[s]["domains"][d]["video_ap"] for s in seeds} for d in u[seeds[0]]["domains"]}  # noqa: E731
                c = compare(aps(units), aps(rows[ref]), 2000) if seeds else None
                diff = (f"{np.mean(dv):+.3f} ({', '.join(f'{x:+.3f}' for x in dv)})",
                        f"{c['diff']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]" if c else "")
            secs = np.mean([u["seconds"] for u in us])
            d1, d2 = diff if diff else ("", "")
            lines.append(f"| {arm} | {len(us)} | {val:.3f} | {test:.3f} | {oracle:.3f} | {d1} | {d2} | {secs:.0f} |")
        lines.append("")
        lines += _per_domain(rows)
    return "\n".join(lines)


def _per_domain(rows: dict[str, dict[int, dict]]) -> list[str]:
    """Test mAP per domain, mean ± std over seeds, every arm side by side."""
    arms = list(rows)
    domains = list(next(iter(next(iter(rows.values())).values()))["domains"])
    out = ["| domain | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for d in domains:
        cells = []
        for arm in arms:
            values = [u["domains"][d]["test_map"] for u in rows[arm].values() if d in u["domains"]]
            std = np.std(values, ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{np.mean(values):.3f} ± {std:.3f}")
        out.append(f"| {d} | " + " | ".join(cells) + " |")
    return [*out, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study")
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--arms", default="", help="comma-separated subset of arms to run")
    parser.add_argument("--benchmarks", default="", help="comma-separated subset of benchmarks to run")
    parser.add_argument("--reference", default=None, help="the arm the differences are taken to (default: the study's)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds instead of the study's")
    parser.add_argument("--report", action="store_true", help="only print the report of what has finished")
    args = parser.parse_args()
    study = yaml.safe_load(Path(args.study).read_text())
    out = Path(args.out)
    (out / "units").mkdir(parents=True, exist_ok=True)
    if not args.report:
        arms = args.arms.split(",") if args.arms else list(study["arms"])
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else None
        todo = [u for u in plan(study, out, seeds) if not Path(u[-1]).exists() and u[0] in arms
                and (not args.benchmarks or u[1] in args.benchmarks.split(","))]
        todo.sort(key=lambda u: arms.index(u[0]))  # --arms also sets the order
        print(f"{len(todo)} runs to do", flush=True)
        with ProcessPoolExecutor(args.jobs) as pool:
            for done in pool.map(run_unit, *zip(*todo)) if todo else []:
                print(f"done {done}", flush=True)
    text = report(study, out, args.reference)
    (out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
