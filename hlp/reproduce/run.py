"""`hlp reproduce`: every table of the paper's section 4, on every seed, as Ray tasks; one report.

plan the cells (tables) -> distinct (config, seed) units -> skip the units whose result
file exists -> run the rest as Ray tasks, at most `parallel` in flight, writing each result as
it lands (so an interrupted run resumes without redoing one) -> MLflow: a run per table, a
child per cell -> report.json, report.md and the figures (report, markdown, figures).
A unit that fails is recorded with its error and the others finish; a rerun retries it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hlp.cluster import ensure_ray
from hlp.config import with_absolute_paths
from hlp.data.datasets import grouped_skips, load_dataset_for
from hlp.data.protocols import available_domains
from hlp.placement import alive_nodes, check_placeable, runs_at_once, worker_resources
from hlp.reproduce.config import ReproduceConfig
from hlp.reproduce.figures import make_figures
from hlp.reproduce.markdown import render
from hlp.reproduce.report import build_report
from hlp.reproduce.runs import ReproduceRuns
from hlp.reproduce.store import UnitStore
from hlp.reproduce.tables import FIGURE3_PANELS, Cell, owners, plan, tables_of
from hlp.reproduce.unit import train_unit
from hlp.storage import human_bytes, kept_lines, size_of
from hlp.tracking import check_reachable, git_commit, local_store

Progress = Callable[[int, int], None]  # (units done, units in all)


@dataclass(frozen=True)
class Unit:
    cell: Cell  # the first cell that needs this config: its MLflow run gets the per-epoch curves
    seed: int
    embed: bool

    @property
    def key(self) -> str:
        return f"{self.cell.config_key}-seed{self.seed}"


def units_of(cells: list[Cell], seeds: list[int]) -> list[Unit]:
    embedded = {c.config_key for c in cells if (c.table, c.row.key) in FIGURE3_PANELS and c.benchmark.dataset == "youtube"}
    return [Unit(cell, seed, key in embedded and seed == seeds[0]) for key, cell in owners(cells).items()
            for seed in seeds]


def run_reproduce(rc: ReproduceConfig, output: Path, progress: Progress | None = None,
                  log: Callable[[str], None] = print) -> dict:

    started = time.time()
    rc = rc.model_copy(update={"experiment": with_absolute_paths(rc.experiment)})
    exp = rc.experiment
    if exp.tracking.enabled:
        check_reachable(exp.tracking.uri)
    datasets = _preflight(rc, log)
    tables = tables_of(rc)  # reads the sweep summaries: once
    cells = plan(rc, tables)
    units = units_of(cells, exp.train.seeds)
    output.mkdir(parents=True, exist_ok=True)
    store = UnitStore(output)
    runs = ReproduceRuns(rc, tables, cells, output, datasets)
    pending = [u for u in units if not store.done(u.key)]
    log(f"{len(cells)} cells, {len(units)} runs ({len(units) - len(pending)} already finished, "
        f"{len(pending)} to do)")
    if progress:
        progress(len(units) - len(pending), len(units))
    if pending:  # a finished reproduction re-renders its report without starting Ray
        _schedule(rc, pending, store, runs, len(units), progress, log)
    finished = [r for u in units if (r := store.load(u.key))]
    report = build_report(rc, tables, cells, store, datasets, time.time() - started, finished)
    paths = write_report(report, output, datasets, store, cells if rc.figures else [])
    runs.finish(report, paths)
    storage = exp.resources.storage_path.rstrip("/")
    ray_runs = sum(size_of(f"{storage}/{u.cell.config.name}-{u.key}") for u in units)
    log(f"kept: the runs' Ray results (what a rerun reads to skip a finished run): {len(units)} runs "
        f"under {storage}, {human_bytes(ray_runs)}")
    for line in kept_lines({"the reproduction's outputs": str(output), **local_store(exp.tracking.uri, exp.tracking.experiment)}):
        log(line)
    return report


def write_report(report: dict, output: Path, datasets: dict, store: UnitStore, cells: list[Cell]) -> dict[str, list[Path]]:
    """Figures (of `cells`), then report.json and report.md from the same dict; returns the files
    each MLflow run gets."""
    seed = report["seeds"][0]
    report["figures"] = make_figures(cells, store, datasets, seed, output / "figures")
    (output / "report.json").write_text(json.dumps(report, indent=1))
    (output / "report.md").write_text(render(report))
    paths: dict[str, list[Path]] = {"report": [output / "report.md", output / "report.json"]}
    for figure in report["figures"]:
        paths["report"].append(output / figure["path"])
        for table in figure["tables"]:
            paths.setdefault(table, []).append(output / figure["path"])
    return paths


def _preflight(rc: ReproduceConfig, log: Callable[[str], None]) -> dict:
    """Each dataset read once (TVSum's two protocols share it) for its domains, labels and skipped
    videos; a benchmark with no domain to train and test is refused before any run."""
    d = rc.experiment.data
    read = {name: load_dataset_for(d.model_copy(update={"dataset": name}))
            for name in dict.fromkeys(b.dataset for b in rc.benchmarks)}
    for name, dataset in read.items():
        for line in grouped_skips(dataset.skipped):
            log(f"{name}: skipped: {line}")
    out = {}
    for bench in rc.benchmarks:
        domains, notes = available_domains(read[bench.dataset], bench.protocol, d.domains)
        for note in notes:
            log(f"{bench.name}: skipped: {note}")
        if not domains:
            raise ValueError(f"{bench.name}: no domain under {d.root} has train and test videos")
        out[bench.name] = {"dataset": read[bench.dataset], "domains": domains}
    return out


def _schedule(rc: ReproduceConfig, pending: list[Unit], store: UnitStore, runs: ReproduceRuns, total: int,
              progress: Progress | None, log: Callable[[str], None]) -> None:
    import ray

    res = rc.experiment.resources
    ensure_ray(res.address)
    inline = res.workers == 0  # the task trains: it reserves what one worker would
    check_placeable(res, max(res.workers, 1), "resources.workers", log)
    task = ray.remote(train_unit).options(num_cpus=res.cpus_per_worker if inline else 0,
                                          num_gpus=worker_resources(res).get("GPU", 0) if inline else 0)
    # In place, Ray queues the tasks on their CPUs (and an autoscaler sees the whole demand);
    # drivers reserve nothing, so as many are started as the cluster has room for trainers.
    limit = rc.parallel or (len(pending) if inline else
                            max(1, runs_at_once(worker_resources(res), res.workers, alive_nodes())))
    commit = git_commit()  # the code each result came from: a resumed report may mix commits
    done, queue, flying = total - len(pending), list(pending), {}
    while queue or flying:
        while queue and len(flying) < limit:
            unit = queue.pop(0)
            ref = task.remote(unit.cell.config.model_dump(), unit.seed, runs.cell_run(unit.cell),
                              f"{unit.cell.config.name}-{unit.key}", unit.embed)
            flying[ref] = unit
        ready, _ = ray.wait(list(flying), num_returns=1)
        unit = flying.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - a bad unit is recorded; the others finish
            error = _one_line(exc)
            store.fail(unit.key, error)
            log(f"failed: {unit.cell.id} seed {unit.seed}: {error}")
        else:
            store.save(unit.key, {**result, "git_commit": commit})
            log(f"done: {unit.cell.id} seed {unit.seed} in {result['seconds']:.0f} s")
        done += 1
        if progress:
            progress(done, total)


def _one_line(exc: Exception) -> str:
    """The task's own exception (Ray wraps it with the remote traceback), in one line."""
    cause = getattr(exc, "cause", None) or exc
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text[:500]}"


