"""Section 4 of the paper as data: its tables, their rows, and the claims the ablations make.

A row is a handful of config changes on top of the paper's defaults. A cell is one row on one
benchmark; cells with the same resolved config (Table 1's CO-AV is also Table 3's last row,
Table 4's last and Table 5's last) share their runs, so each distinct config trains once per seed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from hlp.config import ConfigError, ExperimentConfig, config_from_dict, set_dotted
from hlp.reproduce.config import Benchmark, ReproduceConfig
from hlp.storage import filesystem, read_json

NO_HPCL = {"loss.lambda_hpcl": 0.0, "loss.lambda_rank": 0.0}


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    changes: tuple[tuple[str, Any], ...] = ()  # dotted key -> value, on top of the defaults


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    per_domain: bool  # Tables 1-2 list every domain; the ablations give averages
    datasets: tuple[str, ...]
    rows: tuple[Row, ...]
    full_row: str  # the row that is the paper's full model, the one UMT-S is compared with


def _row(key: str, label: str, changes: dict[str, Any] | None = None) -> Row:
    return Row(key, label, tuple((changes or {}).items()))


CO_AV = _row("co_av", "CO-AV (paper defaults)")
TABLES: dict[str, Table] = {
    "1": Table("1", "Table 1: YouTube Highlights, mAP per domain", True, ("youtube",), (CO_AV,), "co_av"),
    "2": Table("2", "Table 2: TVSum, top-5 mAP per category", True, ("tvsum",), (CO_AV,), "co_av"),
    "3": Table("3", "Table 3: architecture variants", False, ("youtube", "tvsum"), (
        _row("mlp", "Per-clip MLP (baseline, not in the paper)", {"model.variant": "mlp"}),
        _row("v_only", "V Only", {"model.variant": "v_only"}),
        _row("a_only", "A Only", {"model.variant": "a_only"}),
        _row("av", "AV", {"model.variant": "av"}),
        _row("cr_av", "CR-AV", {"model.variant": "cr_av"}),
        _row("co_av", "CO-AV (ours)"),
    ), "co_av"),
    "4": Table("4", "Table 4: learning scheme", False, ("youtube", "tvsum"), (
        _row("ce", "L_ce (baseline)", NO_HPCL),
        _row("ce_hpcl", "L_ce + L_HPCL", {"loss.lambda_rank": 0.0}),
        _row("ce_hpcl_rank", "L_ce + L_HPCL + L_rank"),
    ), "ce_hpcl_rank"),
    "5": Table("5", "Table 5: global representation", False, ("youtube", "tvsum"), (
        _row("none", "w/o G", {"model.global_init": "none"}),
        _row("random", "w/ G, random init", {"model.global_init": "random"}),
        _row("mean", "w/ G, mean init"),
    ), "mean"),
}
# Figure 3 compares AV, CR-AV without HPCL, CR-AV and CO-AV; only the second is in no table.
FIGURE3 = Table("fig3", "Figure 3: CR-AV without HPCL", False, ("youtube",),
                (_row("cr_av_no_hpcl", "CR-AV w/o HPCL", {"model.variant": "cr_av", **NO_HPCL}),), "")
FIGURE3_PANELS = (("3", "av"), ("fig3", "cr_av_no_hpcl"), ("3", "cr_av"), ("3", "co_av"))


@dataclass(frozen=True)
class Claim:
    table: str
    better: str
    worse: str
    statement: str


CLAIMS = (
    Claim("3", "co_av", "mlp", "the full model beats a per-clip MLP on the same features (the floor)"),
    Claim("3", "av", "v_only", "adding audio to vision helps (AV > V Only)"),
    Claim("3", "av", "a_only", "adding vision to audio helps (AV > A Only)"),
    Claim("3", "cr_av", "av", "cross-modal attention beats concatenation (CR-AV > AV)"),
    Claim("3", "co_av", "cr_av", "co-occurrence encoding beats cross-attention (CO-AV > CR-AV)"),
    Claim("4", "ce_hpcl", "ce", "HPCL improves on cross-entropy alone"),
    Claim("4", "ce_hpcl_rank", "ce_hpcl", "the hard-pairs ranking loss adds to HPCL"),
    Claim("5", "mean", "none", "the global decoder helps (w/ G mean > w/o G)"),
    Claim("5", "mean", "random", "mean initialisation of G beats random"),
)


@dataclass(frozen=True)
class Cell:
    """One row of one table on one benchmark: a config, trained once per seed."""

    table: str
    row: Row
    benchmark: Benchmark
    config: ExperimentConfig

    @property
    def id(self) -> str:
        return f"table{self.table}/{self.row.key}/{self.benchmark.name}"

    @cached_property  # read for every seed, file and run of the cell: hash the config once
    def config_key(self) -> str:
        return config_key(self.config)


def config_key(cfg: ExperimentConfig) -> str:
    """What decides a run's numbers; not its name, seeds, tracking or resources."""
    payload = cfg.model_dump(exclude={"name": True, "tracking": True, "resources": True,
                                      "search": True, "train": {"seeds", "threads"}})
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def tables_of(rc: ReproduceConfig) -> list[Table]:
    """The requested tables, a sweep-best row where a sweep summary is given, and Figure 3's extra row."""
    out = []
    for table_id in sorted({str(t) for t in rc.tables}):
        table = TABLES[table_id]
        sweep_rows = tuple(_sweep_row(rc.sweeps[d], d) for d in table.datasets if table.per_domain and d in rc.sweeps)
        out.append(Table(table.id, table.title, table.per_domain, table.datasets, table.rows + sweep_rows,
                         table.full_row))
    if rc.figures and any(b.dataset == "youtube" for b in rc.benchmarks):
        out.append(FIGURE3)
    return out


def plan(rc: ReproduceConfig, tables: list[Table]) -> list[Cell]:
    """Every (table, row, benchmark) cell of `tables` (from `tables_of(rc)`) with its resolved config."""
    cells = []
    base = rc.experiment.model_dump()
    for table in tables:
        for bench in rc.benchmarks:
            if bench.dataset not in table.datasets:
                continue
            for row in table.rows:
                changes = {"data.dataset": bench.dataset, "data.protocol": bench.protocol,
                           "name": f"{rc.name}-t{table.id}-{row.key}-{bench.name}", **dict(row.changes)}
                cfg = config_from_dict(set_dotted(base, changes), f"table {table.id}, row {row.key}")
                cells.append(Cell(table.id, row, bench, cfg))
    return cells


def owners(cells: list[Cell]) -> dict[str, Cell]:
    """Config key -> the first cell that needs it: its run trains, the others share it."""
    first: dict[str, Cell] = {}
    for cell in cells:
        first.setdefault(cell.config_key, cell)
    return first


def _sweep_row(path: str, dataset: str) -> Row:
    """The best parameters of `hlp sweep`'s summary file, as a row."""
    fs, local = filesystem(path)
    if not fs.exists(local):
        raise ConfigError(f"sweeps.{dataset}: sweep summary not found: {path}")
    try:
        params = read_json(fs, local)["best_params"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"sweeps.{dataset}: {path} is not an `hlp sweep` sweep_summary.json ({exc!r})") from None
    shown = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                      for k, v in params.items())
    return Row(f"sweep_best_{dataset}", f"CO-AV (sweep best: {shown})", tuple(params.items()))
