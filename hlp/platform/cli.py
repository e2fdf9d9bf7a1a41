"""The `hlp` command line. Each command parses its arguments and calls one platform function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Audio-visual video highlight detection (HPCL).")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic data and layout tools.")
app.add_typer(data_app, name="data")
err = Console(stderr=True)

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a config key: KEY=VALUE, dotted key, YAML value. Repeatable."),
]


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML.")],
    set_: SetOption = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Output directory.")] = None,
) -> None:
    """Train one model per domain and seed; write metrics.json and scores_test.json."""
    from hlp.platform.config import ConfigError, load_config
    from hlp.platform.datasets import DataError
    from hlp.platform.experiment import run_training
    from hlp.platform.tracking import TrackingError

    try:
        cfg = load_config(config, set_)
    except ConfigError as exc:
        _fail(str(exc))
    out = output or Path("outputs") / cfg.name
    with _progress() as bars:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=total)
            bars.update(tasks[label], completed=done)

        try:
            metrics = run_training(cfg, out, progress, log=lambda line: err.print(line, highlight=False))
        except (DataError, FileNotFoundError, ValueError, TrackingError) as exc:
            _fail(str(exc))
    typer.echo(json.dumps({k: metrics[k] for k in ("domains", "mean_val_map", "mean_test_map")}, indent=1))
    err.print(f"wrote {out}/metrics.json and {out}/scores_test.json (MLflow run {metrics['mlflow_run_id']})")


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="Experiment YAML with a search: block.")],
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted sweep.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", help="Output directory.")] = None,
) -> None:
    """Search search.space with Ray Tune + Optuna on validation mAP; score the best on test once."""
    from hlp.platform.config import ConfigError, load_config, with_absolute_paths
    from hlp.platform.datasets import DataError
    from hlp.platform.experiment import run_training
    from hlp.platform.sweep import run_sweep
    from hlp.platform.tracking import TrackingError

    try:
        cfg = with_absolute_paths(load_config(config, set_))
    except (ConfigError, FileNotFoundError) as exc:
        _fail(str(exc))
    out = output or Path("outputs") / f"{cfg.name}-sweep"
    log = lambda line: err.print(line, highlight=False)  # noqa: E731
    try:
        summary = run_sweep(cfg, out.resolve(), resume, lambda c, o, tags: run_training(c, o, log=log, tags=tags), log)
    except (DataError, FileNotFoundError, ValueError, TrackingError) as exc:
        _fail(str(exc))
    _print_summary(summary)
    err.print(f"wrote {out}/sweep_summary.json")


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
    Console().print(table)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("done"),
        TimeElapsedColumn(), console=err,
    )


@app.command()
def evaluate(
    dataset: Annotated[str, typer.Argument(help="youtube or tvsum")],
    data_root: Annotated[str, typer.Option("--data-root", help="Data root: a path or s3:// URI.")],
    scores: Annotated[Path, typer.Option("--scores", help="JSON {video_id: [score per clip]}.")],
    protocol: Annotated[str, typer.Option("--protocol", help="umt or paper")] = "umt",
) -> None:
    """Score a scores file on the test split; print {"domains": {name: mAP}, "mean": mAP}."""
    from hlp.platform.datasets import DataError, load_dataset
    from hlp.platform.evaluation import ScoresError, evaluate_scores

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


@data_app.command("synth")
def data_synth(
    out: Annotated[str, typer.Option("--out", help="Directory (or s3:// URI) to write the dataset under.")],
    videos: Annotated[int, typer.Option(help="Videos per domain.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a small synthetic dataset in the YouTube Highlights UMT layout."""
    from hlp.platform.synth import SynthSpec, write_synthetic

    counts = write_synthetic(out, SynthSpec(videos_per_domain=videos, seed=seed))
    typer.echo(json.dumps({"root": out, "dataset": "youtube", "videos": counts}))


if __name__ == "__main__":
    app()
