"""The `hlp` command line. Each command parses its arguments and calls one platform function."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

app = typer.Typer(add_completion=True, no_args_is_help=True, help="Audio-visual video highlight detection (HPCL).")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic data and layout tools.")
app.add_typer(data_app, name="data")
config_app = typer.Typer(no_args_is_help=True, help="Experiment files: the resolved config.")
app.add_typer(config_app, name="config")
err = Console(stderr=True)
EXIT_SOME_FAILED = 3  # `hlp extract` finished, but some videos are recorded as failed (README: Commands)
KEY_METRICS = ("mean_test_map", "mean_val_map", "val_map", "best_test_map")  # `hlp runs`: train, trial, sweep

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a config key: KEY=VALUE, dotted key, YAML value. Repeatable."),
]

OutputOption = Annotated[Optional[Path], typer.Option("--output", help="Output directory.")]


def _fail(message: str) -> None:
    # Escaped: messages name files as "[path]", which Rich would read as (bad) markup. Not
    # wrapped: a path or a key split over two lines cannot be copied.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _log(line: str) -> None:
    """A progress line for stderr, printed as written (paths and ids may hold brackets), unwrapped."""
    err.print(escape(line), highlight=False, soft_wrap=True)


def _show_version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        typer.echo(f"hlp {version('hlp')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version of hlp and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show Ray's own logs (workers, controllers, Tune's tables).")] = False,
) -> None:
    # Only the options every command shares; no docstring, so the app's help stays.
    # Ray's logs are quiet unless asked for (hlp.cluster reads HLP_VERBOSE). Without them the
    # lines Ray forwards from workers are hlp's own, so they need no "(RayTrainWorker pid=...)"
    # prefix; Ray reads that setting once, when it is first imported, which is after this.
    if verbose:
        os.environ["HLP_VERBOSE"] = "1"
    elif os.environ.get("HLP_VERBOSE") != "1":
        os.environ.setdefault("RAY_DISABLE_WORKER_LOG_PREFIX", "1")


def _load(config: Path, sets: list[str] | None, schema=None):
    """The validated config, before anything heavy is imported: a typo is reported in a moment."""
    from hlp.config import ConfigError, ExperimentConfig, load_config

    try:
        return load_config(config, sets, schema or ExperimentConfig)
    except ConfigError as exc:
        _fail(str(exc))


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML.")],
    set_: SetOption = None,
    output: OutputOption = None,
) -> None:
    """Train one model per domain and seed; write metrics.json and scores_test.json."""
    cfg = _load(config, set_)
    from hlp.data.datasets import DataError
    from hlp.tracking import TrackingError
    from hlp.train.run import run_training

    out = output or Path("outputs") / cfg.name
    with _stopped_by_signals(), _progress() as bars:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=total)
            bars.update(tasks[label], completed=done)

        try:
            metrics = run_training(cfg, out, progress, log=_log)
        except (DataError, FileNotFoundError, ValueError, TrackingError) as exc:
            _fail(str(exc))
    typer.echo(json.dumps({k: metrics[k] for k in ("domains", "mean_val_map", "mean_test_map")}, indent=1))
    _log(f"wrote {out}/metrics.json and {out}/scores_test.json (MLflow run {metrics['mlflow_run_id']})")


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="Experiment YAML with a search: block.")],
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted sweep.")] = False,
    output: OutputOption = None,
) -> None:
    """Search search.space with Ray Tune + Optuna on validation mAP; score the best on test once."""
    cfg = _load(config, set_)
    from hlp.config import with_absolute_paths
    from hlp.data.datasets import DataError
    from hlp.sweep.run import run_sweep
    from hlp.tracking import TrackingError
    from hlp.train.run import run_training

    try:
        cfg = with_absolute_paths(cfg)
    except FileNotFoundError as exc:
        _fail(str(exc))
    out = output or Path("outputs") / f"{cfg.name}-sweep"
    log = _log
    try:
        with _stopped_by_signals():
            summary = run_sweep(cfg, out.resolve(), resume, lambda c, o, tags: run_training(c, o, log=log, tags=tags, say_kept=False),
                                log)
    except (DataError, FileNotFoundError, ValueError, TrackingError) as exc:
        _fail(str(exc))
    _print_summary(summary)
    _log(f"wrote {out}/sweep_summary.json")


@app.command()
def reproduce(
    config: Annotated[Path, typer.Argument(help="Reproduction YAML (experiments/reproduce.yaml).")],
    set_: SetOption = None,
    output: OutputOption = None,
) -> None:
    """Run the paper's Tables 1-5 on every seed as Ray tasks; write DIR/report.md and DIR/report.json."""
    from hlp.reproduce.config import ReproduceConfig

    rc = _load(config, set_, ReproduceConfig)
    from hlp.data.datasets import DataError
    from hlp.reproduce.run import run_reproduce
    from hlp.reproduce.runs import runs_end_with
    from hlp.tracking import TrackingError

    out = (output or Path("outputs") / f"reproduce-{rc.name}").resolve()
    with _stopped_by_signals(), _progress() as bars:
        task = bars.add_task("runs (config x seed)", total=None)
        try:
            with runs_end_with(out, rc.experiment.tracking):  # FAILED, or KILLED on an interrupt
                report = run_reproduce(rc, out, lambda done, total: bars.update(task, completed=done, total=total),
                                       log=_log)
        except (DataError, FileNotFoundError, ValueError, TrackingError) as exc:  # ConfigError is a ValueError
            _fail(str(exc))
    failed = [c["id"] for c in report["cells"] if not c["complete"]]
    _log(f"wrote {out}/report.md and {out}/report.json")
    if failed:
        err.print(f"[bold red]{len(failed)} cell(s) incomplete[/]: {escape(', '.join(failed))}; "
                  "rerun the same command to retry them")
        raise typer.Exit(code=1)


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"sweep {summary['sweep']}: {summary['trials']} trials")
    table.add_column("")
    table.add_column("best")
    table.add_column("defaults")
    for key, value in summary["best_params"].items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value),
                      str(summary["defaults_params"][key]))
    for domain, best in summary["best"]["domains"].items():
        default = summary["defaults"]["domains"][domain]
        table.add_row(f"{domain} test mAP", f"{best['test_map']:.3f} ± {best['test_map_std']:.3f}",
                      f"{default['test_map']:.3f} ± {default['test_map_std']:.3f}")
    table.add_row("mean val mAP", f"{summary['best']['mean_val_map']:.3f}", f"{summary['defaults']['mean_val_map']:.3f}")
    table.add_row("mean test mAP", f"{summary['best']['mean_test_map']:.3f}",
                  f"{summary['defaults']['mean_test_map']:.3f}")
    verdict = summary.get("verdict")
    if verdict:
        for domain, d in verdict["domains"].items():
            table.add_row(f"{domain}: best - defaults", f"{d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]",
                          "95 % CI over test videos")
        table.add_row("mean: best - defaults", f"{verdict['diff']:+.3f} [{verdict['ci95'][0]:+.3f}, "
                      f"{verdict['ci95'][1]:+.3f}]", verdict["says"])
    Console().print(table)


@contextmanager
def _stopped_by_signals():
    """Ctrl-C and SIGTERM (`kill`, a scheduler ending the job) stop a command the same way: the
    MLflow runs it opened end KILLED on the way out (the commands close them), and it exits 130
    (SIGINT) or 143 (SIGTERM), not with a traceback or click's "Aborted!". SIGTERM raises
    KeyboardInterrupt (Ray turns a subclass into a plain one, hence the record); a SystemExit here
    comes from a SIGTERM handler of Ray's, which ends the runs KILLED as well."""
    received = []

    def on_sigterm(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as exc:
        err.print("[bold red]interrupted[/]: the MLflow runs it had open are closed as KILLED", highlight=False)
        raise typer.Exit(code=130 if isinstance(exc, KeyboardInterrupt) and not received else 143) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("done"),
        TimeElapsedColumn(), console=err,
    )


@app.command()
def evaluate(
    dataset: Annotated[str, typer.Argument(help="youtube or tvsum")],
    data_root: Annotated[str, typer.Option("--data-root", help="Data root: a path or s3:// URI.")],
    scores: Annotated[Path, typer.Option("--scores", help="JSON {video_id: \\[score per clip]}.")],
    protocol: Annotated[str, typer.Option("--protocol", help="umt or paper")] = "umt",
) -> None:
    """Score a scores file on the test split; print {"domains": {name: mAP}, "mean": mAP}."""
    from hlp.data.datasets import DataError, load_dataset
    from hlp.evaluate.evaluation import ScoresError, evaluate_scores

    if protocol not in ("umt", "paper"):
        _fail(f"--protocol must be 'umt' or 'paper', got {protocol!r}")
    try:
        payload = json.loads(scores.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read scores file {scores}: {exc}")
    if not isinstance(payload, dict):
        _fail(f"{scores}: expected a JSON object {{video_id: [scores]}}")
    try:
        data = load_dataset(dataset, data_root)  # type: ignore[arg-type]
        result = evaluate_scores(data, protocol, payload)
    except (ScoresError, DataError, FileNotFoundError) as exc:
        _fail(f"{scores}: {exc}" if isinstance(exc, ScoresError) else str(exc))
    typer.echo(json.dumps(result))


@app.command()
def extract(
    config: Annotated[Path, typer.Argument(help="Extraction YAML (inputs, output, extractors, resources).")],
    set_: SetOption = None,
) -> None:
    """Decode videos and write clip features (visual 3D CNN + PANN audio) to a Parquet store with Ray Data."""
    from hlp.extract.config import ExtractionConfig

    cfg = _load(config, set_, ExtractionConfig)
    from hlp.data.feature_store import StoreError
    from hlp.extract.inputs import InputError
    from hlp.extract.pipeline import run_extraction
    from hlp.extract.registry import ExtractorError

    try:
        with _progress() as bars:
            task = bars.add_task("videos", total=None)
            summary = run_extraction(cfg, log=_log,
                                     progress=lambda done, total: bars.update(task, completed=done, total=total))
    except (ExtractorError, StoreError, InputError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, indent=1))
    _print_extraction(summary)
    _say_kept({"the feature store (features, manifest; a rerun reads it to skip done videos)": summary["store"]})
    if summary["failed"]:
        raise typer.Exit(code=EXIT_SOME_FAILED)


def _say_kept(places: dict[str, str]) -> None:
    """`kept: <what>: <where>, <bytes>` for what a command leaves on disk."""
    from hlp.storage import kept_lines

    for line in kept_lines(places):
        _log(line)


def _print_extraction(summary: dict) -> None:
    """The counts, and each failed video with its reason, on stderr: stdout keeps the JSON summary."""
    from rich.table import Table

    counts = Table(title=escape(f"extraction into {summary['store']}"))
    for column in ("done", "failed", "skipped (already done)"):
        counts.add_column(column, justify="right")
    counts.add_row(str(summary["done"]), str(len(summary["failed"])), str(summary["already_done"]))
    err.print(counts)
    if summary["failed"]:
        failed = Table(title="failed videos (retried by the next run)")
        failed.add_column("video")
        failed.add_column("reason")
        for video, reason in summary["failed"].items():
            failed.add_row(escape(video), escape(reason))
        err.print(failed)


@app.command()
def predict(
    video: Annotated[str, typer.Argument(help="A video file (path or s3:// URI).")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="model_<domain>_seed<N>.pt from `hlp train`.")],
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="Keep the N best clips (default 5).")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Keep clips scoring at least X.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the result JSON here.")] = None,
    reel: Annotated[Optional[Path], typer.Option("--reel", help="Cut the highlight segments into this mp4.")] = None,
    timeline: Annotated[Optional[Path], typer.Option(
        "--timeline", help="Draw scores, segments and thumbnails into this PNG (with --out X.json: X.timeline.png)."
    )] = None,
) -> None:
    """Score every clip of VIDEO and merge the best into highlight segments; optionally cut a reel."""
    from hlp.extract.inputs import open_video
    from hlp.extract.media import MediaError
    from hlp.extract.registry import ExtractorError
    from hlp.predict.predict import predict as run_predict
    from hlp.predict.reel import write_reel
    from hlp.predict.summary import segment_table
    from hlp.predict.timeline import beside, write_timeline
    from hlp.train.model_file import CheckpointError

    if top_k is not None and threshold is not None:
        _fail("give either --top-k or --threshold, not both")
    timeline = timeline or (beside(out) if out is not None else None)
    _check_folders_exist(("--out", out), ("--reel", reel), ("--timeline", timeline))
    try:
        result = run_predict(video, checkpoint, top_k, threshold)
        if reel is not None:
            segments = [(s["start_s"], s["end_s"]) for s in result["segments"]]
            with open_video(video) as source:  # a path, or a seekable s3:// file
                result["reel"] = {"path": str(reel), "duration_s": write_reel(source, segments, str(reel))}
        if timeline is not None:
            with open_video(video) as source:
                write_timeline(result, source, timeline)
    except MediaError as exc:
        _fail(f"{video}: {exc}")
    except (CheckpointError, ExtractorError, FileNotFoundError) as exc:
        _fail(str(exc))
    from hlp.storage import human_bytes, size_of

    err.print(segment_table(result))
    text = json.dumps(result, indent=1)
    if reel is not None:
        _log(f"wrote {reel}, {human_bytes(size_of(str(reel)))} (the chosen segments, cut)")
    if timeline is not None:
        _log(f"wrote {timeline}, {human_bytes(size_of(str(timeline)))} "
             "(scores over time, chosen segments shaded, thumbnails of the best)")
    if out is not None:
        out.write_text(text)
        _log(f"wrote {out}, {human_bytes(size_of(str(out)))} ({len(result['clips'])} clips, "
             f"{len(result['segments'])} segments)")
    else:
        typer.echo(text)


def _check_folders_exist(*targets: tuple[str, Path | None]) -> None:
    """Refuse an output whose folder is missing before the work, not after a whole prediction."""
    for option, path in targets:
        if path is not None and not path.parent.is_dir():
            _fail(f"{option} {path}: folder {path.parent} does not exist")


@data_app.command("import-umt")
def data_import_umt(
    root: Annotated[str, typer.Option("--root", help="Data root holding <dataset>/ in the UMT layout.")],
    dataset: Annotated[str, typer.Option("--dataset", help="youtube or tvsum")],
    out: Annotated[str, typer.Option("--out", help="Feature store to write: a directory or s3:// URI.")],
    streams: Annotated[str, typer.Option(help="Visual streams, comma-separated: video_features/<vid>_<s>.npy")] = "rgb,opt",
) -> None:
    """Copy a UMT-layout release (video_features/, audio_features/) into a Parquet feature store."""
    from hlp.data.datasets import DataError
    from hlp.data.feature_store import StoreError
    from hlp.data.umt_layout import import_umt

    try:
        summary = import_umt(root, dataset, out, tuple(streams.split(",")), log=_log)
    except (DataError, StoreError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary))


@data_app.command("export-umt")
def data_export_umt(
    store: Annotated[str, typer.Option("--store", help="Feature store written by `hlp extract` or import-umt.")],
    out: Annotated[str, typer.Option("--out", help="Data root to write <dataset>/video_features, audio_features under.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Folder name: youtube or tvsum.")] = "youtube",
) -> None:
    """Write a feature store's done videos in the UMT layout (one .npy per stream and video)."""
    from hlp.data.feature_store import StoreError
    from hlp.data.umt_layout import export_umt

    try:
        summary = export_umt(store, out, dataset)
    except StoreError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary))
    if summary["visual_streams"] != ["rgb", "opt"]:
        _log(f"train on it with --set data.visual_streams=[{','.join(summary['visual_streams'])}]")


@data_app.command("synth")
def data_synth(
    out: Annotated[str, typer.Option("--out", help="Directory (or s3:// URI) to write the dataset under.")],
    videos: Annotated[int, typer.Option(help="Videos per domain.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a small synthetic dataset in the YouTube Highlights and TVSum UMT layouts."""
    from hlp.data.synth import SynthSpec, write_synthetic, write_synthetic_tvsum

    counts = write_synthetic(out, SynthSpec(videos_per_domain=videos, seed=seed))
    tvsum = write_synthetic_tvsum(out, SynthSpec(domains=("SA", "SB"), videos_per_domain=5, seed=seed))
    typer.echo(json.dumps({"root": out, "dataset": "youtube", "videos": counts, "tvsum_videos": tvsum}))


@config_app.command("show")
def config_show(
    config: Annotated[Path, typer.Argument(help="An experiment, extraction or reproduction YAML.")],
    set_: SetOption = None,
) -> None:
    """Print the resolved config (defaults, the file and --set merged) as YAML; validates it and runs nothing."""
    from hlp.config import to_yaml

    typer.echo(to_yaml(_load(config, set_, _schema_of(config))), nl=False)


def _schema_of(config: Path):
    """Which kind of YAML a file is, by its top-level keys: a reproduction nests its experiment
    under `experiment:`, an extraction lists its `inputs:`; anything else is an experiment."""
    import yaml

    from hlp.extract.config import ExtractionConfig
    from hlp.reproduce.config import ReproduceConfig

    try:
        raw = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError):
        return None  # loading the file again reports what is wrong with it
    if isinstance(raw, dict) and "experiment" in raw:
        return ReproduceConfig
    if isinstance(raw, dict) and "inputs" in raw:
        return ExtractionConfig
    return None


@app.command()
def runs(
    tracking_uri: Annotated[str, typer.Option("--tracking-uri", help="MLflow store: sqlite:///PATH or a server.")]
    = "sqlite:///mlflow.db",
    experiment: Annotated[Optional[str], typer.Option("--experiment", help="Only this experiment (default: all).")]
    = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show the N newest runs.")] = 20,
) -> None:
    """List past runs of the tracking store, newest first: name, status, start time and key metrics."""
    from hlp.config import ConfigError, config_from_dict

    try:  # the same refusal of credentials in the URI as tracking.uri (they belong in the environment)
        config_from_dict({"tracking": {"uri": tracking_uri}}, "--tracking-uri")
    except ConfigError as exc:
        _fail(str(exc))
    from hlp.tracking import TrackingError, absolute_uri, check_reachable

    uri = absolute_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        _fail(f"--tracking-uri {tracking_uri}: no tracking store at {uri.removeprefix('sqlite:///')} "
              f"(hlp train, sweep and reproduce write one)")
    try:
        check_reachable(uri)
        experiments, found = _recent_runs(uri, experiment, limit)
    except TrackingError as exc:
        _fail(str(exc))
    if not found:
        _log(f"no runs in {uri}" + (f" under experiment {experiment!r}" if experiment else ""))
        return
    _print_runs(experiments, found)


def _recent_runs(uri: str, experiment: str | None, limit: int) -> tuple[dict[str, str], list]:
    """(experiment id -> name, the `limit` newest runs of those experiments)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    chosen = [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments()
    if chosen == [None]:
        known = sorted(e.name for e in client.search_experiments())
        _fail(f"no experiment {experiment!r} in {uri}; it has {', '.join(known)}")
    names = {e.experiment_id: e.name for e in chosen}
    return names, client.search_runs(list(names), max_results=limit, order_by=["attributes.start_time DESC"])


def _print_runs(experiments: dict[str, str], found: list) -> None:
    from datetime import datetime

    from rich.table import Table

    metrics = [m for m in KEY_METRICS if any(m in run.data.metrics for run in found)]
    table = Table(title=f"{len(found)} newest runs")
    for column in ("experiment", "run", "status", "started", *metrics):
        table.add_column(column)
    for run in found:
        started = datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
        values = [f"{run.data.metrics[m]:.4f}" if m in run.data.metrics else "" for m in metrics]
        table.add_row(escape(experiments[run.info.experiment_id]), escape(run.info.run_name or run.info.run_id),
                      run.info.status, started, *values)
    Console().print(table)


if __name__ == "__main__":
    app()
