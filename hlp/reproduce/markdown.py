"""`report.md`, rendered only from the report dict that is also written as `report.json`."""

from __future__ import annotations

import math

from hlp.evaluate.paired import VERDICTS

SELECTION_NOTE = (
    "**val-selected**: each seed's epoch and scoring mode chosen on the validation split carved from "
    "the training videos; the test split is scored once. **test-selected (optimistic)**: the best test "
    "mAP over epochs and scoring modes, as UMT and lighthouse report it; it peeks at the test labels, "
    "so it is not an estimate of anything and is shown only to measure that effect."
)

CELL_NOTE = (
    "Every cell is the mean ± sample std over seeds of the test mAP (YouTube Highlights) or top-5 mAP "
    "(TVSum), averaged over the domains that have features."
)
REFERENCES_NOTE = (
    "Paper: Tables 1-2 \"Ours*\" (I3D) per domain; Tables 3-5 give only averages over all six YouTube "
    "domains / ten TVSum categories under the paper's TVSum protocol (2 longest videos train, 3 test). "
    "UMT-S: its README on these features, UMT splits, averaged over the same domains as ours, beside "
    "the full model only (UMT has no ablations)."
)
CLAIMS_NOTE = (
    "Paired by seed and by test video (same seeds, same validation split, same test videos). Δ is the "
    "better row's test mAP minus the worse row's (val-selected), averaged over seeds and domains. The "
    "95 % interval resamples test videos within each domain (seed-averaged per-video AP differences); a "
    "claim **holds** when the interval is above 0, is **reversed** when below, and is **not resolved** "
    "otherwise. Where a domain has a single test video (TVSum's UMT split), the domains are resampled "
    "instead. The paired t-test is across seeds (needs 2 or more)."
)
SILHOUETTE_NOTE = (
    "Silhouette of highlight vs non-highlight segments in the embedding space itself (cosine geometry; "
    "higher = better separated; t-SNE distorts distances):"
)


def num(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def mean_std(s: dict) -> str:
    if s["mean"] is None:
        return "–"
    return num(s["mean"]) + (f" ± {s['std']:.3f}" if s["std"] is not None else "")


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _grid(head: list[str], rows: list[list[str]]) -> list[str]:
    return [_line(head), "|" + "---|" * len(head), *(_line(r) for r in rows)]


def per_domain_block(block: dict) -> list[str]:
    rows = block["rows"]
    head = ["domain"] + [f"{r['label']}: {sel}" for r in rows for sel in ("val-selected", "test-selected*")]
    head += ["paper (Ours*, I3D)", "Δ paper", "UMT-S", "Δ UMT"]
    lines = []
    for d in block["domains"]:
        ref = rows[0]["domain_refs"][d]
        cells = [mean_std(r["domains"][d][sel]) for r in rows for sel in ("val_selected", "test_selected")]
        lines.append([d, *cells, num(ref["paper"]), num(ref["diff_paper"], True), num(ref["umt"]),
                      num(ref["diff_umt"], True)])
    first = rows[0]
    mean = [mean_std(r["mean"][sel]) for r in rows for sel in ("val_selected", "test_selected")]
    lines.append(["**mean (these domains)**", *mean, num(first["paper"]), num(first["diff_paper"], True),
                  num(first["umt"]), num(first["diff_umt"], True)])
    return _grid(head, lines)


def average_block(block: dict) -> list[str]:
    head = ["row", "val-selected", "test-selected*", "paper", "Δ paper", "UMT-S", "Δ UMT"]
    lines = [[r["label"], mean_std(r["mean"]["val_selected"]), mean_std(r["mean"]["test_selected"]),
              num(r["paper"]), num(r["diff_paper"], True), num(r["umt"]), num(r["diff_umt"], True)]
             for r in block["rows"]]
    return _grid(head, lines)


def table_section(table: dict, benchmarks: dict) -> list[str]:
    out = [f"## {table['title']}", ""]
    for block in table["blocks"]:
        b = benchmarks[block["benchmark"]]
        out += [f"### {block['benchmark']} ({b['dataset']}, protocol `{b['protocol']}`)", ""]
        out += per_domain_block(block) if table["per_domain"] else average_block(block)
        incomplete = [r["label"] for r in block["rows"] if not r["complete"]]
        if incomplete:
            out += ["", f"Incomplete (some seeds failed or did not run): {', '.join(incomplete)}."]
        out.append("")
    return out


def claims_section(claims: list[dict], resamples: int | None = None) -> list[str]:
    if not claims:
        return []
    head = ["table", "claim", "benchmark", "Δ (better − worse)", "Δ per seed", "paired t p", "95 % CI (bootstrap)",
            "verdict", "domains: " + " / ".join(VERDICTS)]
    rows = []
    for c in claims:
        counts = [sum(d["verdict"] == v for d in c["domains"].values()) for v in VERDICTS]
        rows.append([c["table"], c["statement"], c["benchmark"], num(c["diff"], True),
                     ", ".join(num(x, True) for x in c["per_seed"]), num(c["t_p"]),
                     f"[{num(c['ci95'][0], True)}, {num(c['ci95'][1], True)}]", f"**{c['verdict']}**",
                     " / ".join(map(str, counts))])
    detail_head = ["table", "claim", "benchmark", "domain", "Δ", "Δ per seed", "paired t p", "95 % CI", "verdict"]
    detail = [[c["table"], f"{c['better']} > {c['worse']}", c["benchmark"], d, num(v["diff"], True),
               ", ".join(num(x, True) for x in v["per_seed"]), num(v["t_p"]),
               f"[{num(v['ci95'][0], True)}, {num(v['ci95'][1], True)}]", v["verdict"]]
              for c in claims for d, v in c["domains"].items()]
    verdicts = {v: [f"{c['statement']} ({c['benchmark']})" for c in claims if c["verdict"] == v] for v in VERDICTS}
    return [
        "## Do the paper's ablation claims hold on this data?", "", CLAIMS_NOTE, "",
        *_grid(head, rows), "",
        f"- Holds: {'; '.join(verdicts['holds']) or 'none'}.",
        f"- Reversed: {'; '.join(verdicts['reversed']) or 'none'}.",
        f"- Not resolved: {'; '.join(verdicts['not resolved']) or 'none'}.",
        f"- Too few test videos to tell: {'; '.join(verdicts['too few test videos']) or 'none'}.", "",
        "Per domain:", "", *_grid(detail_head, detail), "",
    ]


def figures_section(figures: list[dict]) -> list[str]:
    out = ["## Figures", ""] if figures else []
    for f in figures:
        out += [f"### {f['title']}", "", f"![{f['title']}]({f['path']})", ""]
        if "silhouette" in f:
            domains = sorted({d for s in f["silhouette"].values() for d in s})
            rows = [[label, *(num(s.get(d)) for d in domains)] for label, s in f["silhouette"].items()]
            out += [SILHOUETTE_NOTE, "", *_grid(["model", *domains], rows), ""]
    return out


def render(report: dict) -> str:
    seeds = report["seeds"]
    lines = [
        f"# Reproduction of the paper's section 4: `{report['name']}`", "",
        f"- report rendered at git commit `{report['git_commit']}`, runs trained at "
        f"{', '.join(f'`{c}`' for c in report['trained_at'])}; seeds {seeds} ({len(seeds)}); {report['epochs']} epochs; "
        f"validation split: {report['val_fraction']:.0%} of each domain's training videos, carved by seed; "
        f"the runs' tasks took {report['task_s'] / 60:.1f} min in all; this invocation {report['wall_s'] / 60:.1f} min.",
        f"- {CELL_NOTE}",
        f"- {SELECTION_NOTE}",
        f"- {REFERENCES_NOTE}",
    ]
    for name, b in report["benchmarks"].items():
        if b["skipped"]:
            lines.append(f"- {name}: skipped {'; '.join(b['skipped'])}.")
    lines.append("")
    for table in report["tables"]:
        lines += table_section(table, report["benchmarks"])
    lines += claims_section(report["claims"])
    lines += figures_section(report["figures"])
    failed = [(c["id"], s, e) for c in report["cells"] for s, e in c["failed"].items()]
    if failed:
        lines += ["## Runs that did not finish", "", *(f"- {cid} seed {s}: {e}" for cid, s, e in failed), ""]
    return "\n".join(lines)
