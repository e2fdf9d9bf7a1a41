"""MLflow for `hlp reproduce`: the report's run, a parent run per table, a child run per cell."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hlp.config import TrackingConfig, flatten
from hlp.data.inputs import video_digests
from hlp.reproduce.config import ReproduceConfig
from hlp.reproduce.tables import Cell, Table, owners
from hlp.tracking import Tracker, end_status
from hlp.train.runs import run_inputs


def _slot(cell: Cell) -> str:
    """A cell's MLflow run is keyed by its config too: rerun into the same DIR with other settings,
    the cell gets a new run instead of mixing two configs' curves in one."""
    return f"{cell.id}@{cell.config_key}"


class ReproduceRuns:
    """MLflow: one parent run per table, one child per cell, under one run for the report.

    Run ids live in DIR/mlflow_runs.json, so a resumed reproduction logs into the same runs.
    Cells that share a config share its training: the first such cell's run holds the per-epoch
    curves, the others name it in their `trained_in` tag; every cell run gets its own summary.
    """

    def __init__(self, rc: ReproduceConfig, tables: list[Table], cells: list[Cell], output: Path,
                 datasets: dict | None = None) -> None:
        """`datasets`: benchmark name -> {"dataset": ...}, read by the preflight: each new cell
        run records the data it trains on (dataset inputs)."""
        t = rc.experiment.tracking
        self.datasets, self.seeds = datasets or {}, rc.experiment.train.seeds
        self.digests: dict[str, dict[str, str]] = {}
        self.path = output / "mlflow_runs.json"
        state = json.loads(self.path.read_text()) if self.path.exists() else {"tables": {}, "cells": {}}
        common = {"reproduce": rc.name}
        self.report = Tracker(t.uri, t.experiment, f"reproduce-{rc.name}", common, t.enabled,
                              reuse_run_id=state.get("report"))
        self.tables = {table.id: Tracker(t.uri, t.experiment, f"{rc.name}: {table.title}",
                                         {**common, "table": table.id}, t.enabled, parent_run_id=self.report.run_id,
                                         reuse_run_id=state["tables"].get(table.id))
                       for table in tables}
        first = owners(cells)
        self.cells = {c.id: self._cell_run(c, first[c.config_key], state["cells"], t, common) for c in cells}
        slots = {**state["cells"], **{_slot(c): self.cells[c.id].run_id for c in cells}}
        self.path.write_text(json.dumps({"report": self.report.run_id, "cells": slots,
                                         "tables": {k: v.run_id for k, v in self.tables.items()}}, indent=1))

    def _cell_run(self, cell: Cell, owner: Cell, known: dict[str, str], t, common: dict[str, str]) -> Tracker:
        tags = {**common, "table": cell.table, "row": cell.row.key, "benchmark": cell.benchmark.name,
                "dataset": cell.benchmark.dataset, "protocol": cell.benchmark.protocol,
                "variant": cell.config.model.variant, "config_key": cell.config_key,
                **({"trained_in": owner.id} if owner is not cell else {})}
        tracker = Tracker(t.uri, t.experiment, cell.id, tags, t.enabled, parent_run_id=self.tables[cell.table].run_id,
                          reuse_run_id=known.get(_slot(cell)))
        if _slot(cell) not in known:
            tracker.log_params(flatten(cell.config))
            if cell.benchmark.name in self.datasets:
                dataset = self.datasets[cell.benchmark.name]["dataset"]
                digests = self.digests.setdefault(dataset.name, video_digests(dataset))
                tracker.log_inputs(run_inputs(cell.config, dataset, self.seeds, digests=digests))
        return tracker

    def cell_run(self, cell: Cell) -> str | None:
        return self.cells[cell.id].run_id

    def finish(self, report: dict, paths: dict[str, list[Path]]) -> None:
        for cell in report["cells"]:
            tracker = self.cells[cell["id"]]
            tracker.log_metrics(cell["metrics"])
            tracker.finish("FINISHED" if cell["complete"] else "FAILED")
        for table_id, tracker in self.tables.items():
            tracker.log_metrics(report["table_metrics"].get(table_id, {}))
            for path in paths.get(table_id, []):
                tracker.log_artifact(path)
            tracker.finish()
        for path in paths["report"]:
            self.report.log_artifact(path)
        self.report.finish()


@contextmanager
def runs_end_with(output: Path, tracking: TrackingConfig) -> Iterator[None]:
    """Whatever stops a reproduction (an error, Ctrl-C, SIGTERM), the runs it opened (those in
    DIR/mlflow_runs.json still RUNNING) end FAILED, or KILLED on an interrupt, instead of RUNNING."""
    try:
        yield
    except BaseException as exc:
        close_open_runs(output, tracking, end_status(type(exc)))
        raise


def close_open_runs(output: Path, tracking: TrackingConfig, status: str) -> None:
    """End every run of DIR/mlflow_runs.json that is still RUNNING with `status`."""
    path = output / "mlflow_runs.json"
    if not tracking.enabled or not path.exists():
        return
    state = json.loads(path.read_text())
    ids = [state.get("report"), *state.get("tables", {}).values(), *state.get("cells", {}).values()]
    for run_id in dict.fromkeys(i for i in ids if i):
        Tracker.attach(tracking.uri, run_id).finish(status)  # a run that has ended keeps its status
