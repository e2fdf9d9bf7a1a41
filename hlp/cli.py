"""The `hlp` command line. Each command parses its arguments and calls one platform function."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
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

from hlp.interrupts import Interrupted, interruptible

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
    """A progress line for stderr, printed as written (paths and ids may hold brackets), unwrapped;
    the run's label first where runs train side by side (`[best] ...`: hlp.train.progress.labelled)."""
    from hlp.train.progress import with_label

    err.print(escape(with_label(line)), highlight=False, soft_wrap=True)


def _show_version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        typer.echo(f"hlp {version('hlp')}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version of hlp and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show the logs of Ray, Tune, Optuna and MLflow "
                                               "(workers, controllers, Tune's tables).")] = False,
) -> None:
    # Only the options every command shares; no docstring, so the app's help stays.
    # Ray's logs are quiet unless asked for (hlp.cluster reads HLP_VERBOSE): Ray forwards no
    # worker's output then, and the driver prints hlp's lines itself. Ray reads the settings
    # below once, when it is first imported, which is after this.
    if verbose:
        os.environ["HLP_VERBOSE"] = "1"
    # Every line Ray prints for its processes (with -v what workers print; always, the raylet's
    # notes such as "A worker died"), once each and in order: its deduplication holds lines back
    # (without -v, with no thread to flush them, for good) and prints "[repeated 5x across
    # cluster]" in colour codes, which a log file keeps raw; nor colour where no terminal shows it.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    if os.environ.get("HLP_VERBOSE") != "1":
        # Should RAY_LOG_TO_DRIVER=1 forward workers' lines, they need no "(RayTrainWorker pid=...)".
        os.environ.setdefault("RAY_DISABLE_WORKER_LOG_PREFIX", "1")
        # MLflow's INFO lines ("Creating initial MLflow database tables...") are not hlp's either.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        if ctx.invoked_subcommand in RAY_COMMANDS:
            _drop_native_log_lines()


RAY_COMMANDS = ("train", "sweep", "reproduce", "extract")  # the commands that start or join a Ray
# A line of Ray's C++ core (`[2026-12-08 02:59:15,429 E 13479 13479] core_worker.cc:2465: ...`)
# or of gRPC's (`E1208 02:59:15.429817  13479 chttp2_transport.cc:1234] ...`).
NATIVE_LOG_LINE = re.compile(rb"^(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] "
                             rb"|[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ )\S+:\d+")


def _drop_native_log_lines() -> None:
    """Without --verbose, the lines that Ray's C++ core (and gRPC) log on this process's stderr,
    at ERROR and up, do not reach the terminal: notes of Ray's own that read as failures (Ray
    Data's model actors: "[... E ...] core_worker.cc: Actor ... has constructor arguments in the
    object store and max_restarts > 0"). They stay in Ray's session logs, and a failure they go
    with is raised as Python's error, which prints. Only the writes of native code pass a filter:
    file descriptor 2 becomes a pipe that a thread copies on, without those lines, while Python's
    sys.stderr (hlp's lines, Rich's progress bars, tracebacks) writes to the terminal as before.
    Only in a process whose sys.stderr is still the real one (not under a test's capture)."""
    try:
        if sys.stderr is not sys.__stderr__ or sys.stderr.fileno() != 2:
            return
        sys.stderr.flush()
        terminal = os.dup(2)
        python_side = os.fdopen(os.dup(terminal), "w", buffering=1, encoding=sys.stderr.encoding,
                                errors=sys.stderr.errors)
        read, write = os.pipe()
    except (AttributeError, OSError, ValueError):
        return

    def copy_on() -> None:
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                if not NATIVE_LOG_LINE.match(line):
                    os.write(terminal, line)

    os.set_inheritable(write, False)
    os.dup2(write, 2)  # what native code writes to fd 2 (which processes started later inherit)
    os.close(write)
    sys.stderr = python_side
    threading.Thread(target=copy_on, daemon=True, name="hlp-native-stderr").start()


def _load(config: Path, sets: list[str] | None, schema=None, check=None):
    """The validated config, before anything heavy is imported: a typo is reported in a moment.
    `check`: what the command that runs it checks besides (`hlp sweep`'s of its search space)."""
    from hlp.config import ConfigError, ExperimentConfig, load_config

    try:
        cfg = load_config(config, sets, schema or ExperimentConfig)
        if check is not None:
            check(cfg)
    except ConfigError as exc:
        _fail(str(exc))
    return cfg


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
    """Ctrl-C and SIGTERM (`kill`, a scheduler ending the job) stop a command the same way
    (`hlp.interrupts` owns both): the MLflow runs it opened end KILLED on the way out (the
    commands close them), and it exits 130 (SIGINT) or 143 (SIGTERM), not with a traceback or
    click's "Aborted!"."""
    try:
        with interruptible():
            yield
    except Interrupted as exc:
        err.print("[bold red]interrupted[/]: the MLflow runs it had open are closed as KILLED", highlight=False)
        raise typer.Exit(code=128 + exc.signum) from None


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
        payload = json.loads(scores.read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"cannot read scores file {scores}: {exc.strerror or exc}")
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8 text
        _fail(f"{scores}: not a JSON file ({exc})")
    if not isinstance(payload, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(payload), "a number")
        _fail(f"{scores}: expected a JSON object {{video_id: [score per clip]}}, got {kind}")
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
    checkpoint: Annotated[Optional[str], typer.Option(
        "--checkpoint", help="model_<domain>_seed<N>.pt from `hlp train` (path or s3:// URI).")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Instead of --checkpoint, an MLflow model: models:/NAME/VERSION, models:/MODEL_ID, "
                        "runs:/RUN_ID/model-DOMAIN, or a local model file or MLflow Model folder.")] = None,
    tracking_uri: Annotated[str, typer.Option(
        "--tracking-uri", envvar="MLFLOW_TRACKING_URI",
        help="MLflow store that --model's models:/ and runs:/ URIs are resolved in: $MLFLOW_TRACKING_URI if set, "
             "else sqlite:///mlflow.db of the working directory.")] = "sqlite:///mlflow.db",
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="Keep the N best clips (default 5).")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Keep clips scoring at least X.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the result JSON here.")] = None,
    reel: Annotated[Optional[Path], typer.Option("--reel", help="Cut the highlight segments into this mp4.")] = None,
    timeline: Annotated[Optional[Path], typer.Option(
        "--timeline", help="Draw scores, segments and thumbnails into this PNG (with --out X.json: X.timeline.png)."
    )] = None,
) -> None:
    """Score every clip of VIDEO and merge the best into highlight segments; optionally cut a reel."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:  # before the imports: refused at once
        _fail(f"--threshold {threshold:g}: clip scores lie in [0, 1], so give a threshold between 0 and 1")
    from hlp.extract.inputs import open_video
    from hlp.extract.media import MediaError
    from hlp.extract.registry import ExtractorError
    from hlp.predict.mlflow_model import load_model
    from hlp.predict.predict import predict as run_predict
    from hlp.predict.reel import write_reel
    from hlp.predict.summary import segment_table
    from hlp.predict.timeline import beside, write_timeline
    from hlp.train.model_file import CheckpointError

    if top_k is not None and threshold is not None:
        _fail("give either --top-k or --threshold, not both")
    if (checkpoint is None) == (model is None):
        _fail("give the model as either --checkpoint FILE or --model URI" + (", not both" if model else ""))
    if model is not None:  # the same refusal of credentials in the URI as tracking.uri (they belong in the environment)
        from hlp.config import ConfigError, config_from_dict

        try:
            config_from_dict({"tracking": {"uri": tracking_uri}}, "--tracking-uri")
        except ConfigError as exc:
            _fail(str(exc))
    timeline = timeline or (beside(out) if out is not None else None)
    _check_folders_exist(("--out", out), ("--reel", reel), ("--timeline", timeline))
    try:
        loaded = load_model(model, tracking_uri) if model is not None else None
        result = run_predict(video, checkpoint or model, top_k, threshold, loaded=loaded)
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
    """Print the resolved config (defaults, the file and --set merged) as YAML; validates it as the command that
    runs it does (a sweep's search space as `hlp sweep`) and runs nothing."""
    from hlp.config import to_yaml

    typer.echo(to_yaml(_load(config, set_, *_schema_of(config, set_))), nl=False)


def _schema_of(config: Path, sets: list[str] | None = None) -> tuple:
    """(schema, check) of the command that runs a file, by its top-level keys: a reproduction nests
    its experiment under `experiment:`, an extraction lists its `inputs:`; anything else is an
    experiment, and one with a `search:` section (in the file or a `--set search.*`) is a sweep,
    checked by the function `hlp sweep` itself calls."""
    import yaml

    from hlp.extract.config import ExtractionConfig
    from hlp.reproduce.config import ReproduceConfig

    try:
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8 text
        raw = None  # loading the file again reports what is wrong with it
    raw = raw if isinstance(raw, dict) else {}
    if "experiment" in raw:
        return ReproduceConfig, None
    if "inputs" in raw:
        return ExtractionConfig, None
    if "search" in raw or any(s.partition("=")[0].strip().split(".")[0] == "search" for s in sets or []):
        from hlp.sweep.space import check_space

        return None, check_space
    return None, None


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
    """The runs as a table that fits the terminal: the run's name always whole, then as many of
    status, start time, the key metrics and the experiment as fit beside it (the start time may
    wrap); the caption names what a wider terminal would show."""
    from datetime import datetime

    from rich.table import Table

    metrics = [m for m in KEY_METRICS if any(m in run.data.metrics for run in found)]
    rows = [{"experiment": experiments[run.info.experiment_id], "run": run.info.run_name or run.info.run_id,
             "status": run.info.status,
             "started": datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S"),
             **{m: f"{run.data.metrics[m]:.4f}" if m in run.data.metrics else "" for m in metrics}} for run in found]
    names = {row["experiment"] for row in rows}
    single = len(names) == 1  # one experiment: named in the title, not in a column of its own
    title = f"{len(found)} newest runs" + (f" of {next(iter(names))}" if single else "")
    console = Console()
    order = ["run", "status", "started", *metrics, *([] if single else ["experiment"])]  # what goes first
    widths = _fitting_columns(order, rows, console.width)
    left_out = [c for c in order if c not in widths]
    table = Table(title=escape(title), caption=f"left out at {console.width} columns: {', '.join(left_out)} "
                  "(a wider terminal shows them)" if left_out else None)
    shown = [c for c in ("experiment", "run", "status", "started", *metrics) if c in widths]
    for column in shown:
        fits = widths[column] >= _natural_width(column, rows)
        # The run's name never shrinks; folded (never cut) only where it alone is wider than the terminal.
        table.add_column(column, no_wrap=fits, max_width=None if fits else widths[column],
                         min_width=widths[column] if column == "run" and fits else None,
                         overflow="fold" if column in ("run", "experiment") else "ellipsis")
    for row in rows:
        table.add_row(*[escape(row[c]) for c in shown])
    console.print(table)


_WRAPPED_WIDTH = {"started": 10, "experiment": 10}  # the columns that may wrap: the date alone; the header


def _natural_width(column: str, rows: list[dict[str, str]]) -> int:
    return max(len(column), *(len(row[column]) for row in rows))


def _fitting_columns(order: list[str], rows: list[dict[str, str]], width: int) -> dict[str, int]:
    """Column -> its content width, for the columns of `order` that fit a table `width` wide, in
    that order of priority: the first (the run's name) always, at its whole width where the
    terminal holds it; then each other one that fits, wrapped where it may wrap (`_WRAPPED_WIDTH`),
    else whole; then the wrapped ones widened again, in the same order, while room is left.
    A column costs its content and 3 (padding and a rule), the table 1 (its left border)."""
    first = order[0]
    chosen = {first: min(_natural_width(first, rows), max(width - 4, 1))}
    used = 1 + chosen[first] + 3
    for column in order[1:]:
        least = min(_WRAPPED_WIDTH.get(column, 10**6), _natural_width(column, rows))
        if used + least + 3 <= width:
            chosen[column] = least
            used += least + 3
    for column in chosen:
        extra = _natural_width(column, rows) - chosen[column]
        if 0 < extra <= width - used:
            chosen[column] += extra
            used += extra
    return chosen

if __name__ == "__main__":
    app()
