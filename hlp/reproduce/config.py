"""The typed `hlp reproduce` YAML: which benchmarks and tables, and the experiment they share.

`experiment` is an ordinary experiment config (the paper's defaults); each table row changes a
few of its keys, and each benchmark sets `data.dataset` and `data.protocol`. So `--set
experiment.train.epochs=2` shortens every run alike, and a typo is refused as everywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hlp.config import ExperimentConfig, _Section


class Benchmark(_Section):
    dataset: Literal["youtube", "tvsum"]
    protocol: Literal["umt", "paper"]

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.protocol}"


# YouTube Highlights: the paper follows the published split, so `paper` = `umt` there and one
# run covers both; TVSum's two protocols differ (protocols.py), so both are run.
DEFAULT_BENCHMARKS = [Benchmark(dataset="youtube", protocol="umt"), Benchmark(dataset="tvsum", protocol="umt"),
                      Benchmark(dataset="tvsum", protocol="paper")]


class ReproduceConfig(_Section):
    name: str = "paper"
    benchmarks: list[Benchmark] = DEFAULT_BENCHMARKS
    tables: list[Literal[1, 2, 3, 4, 5]] = [1, 2, 3, 4, 5]
    figures: bool = True
    # `hlp sweep`'s sweep_summary.json per dataset: its best_params become a "sweep best" row
    # of Tables 1 and 2 (the sweep selected them on validation splits, never on test).
    sweeps: dict[Literal["youtube", "tvsum"], str] = {}
    # Runs in flight at once. Default: every run, queued by Ray on its CPU or GPU (workers: 0), or
    # as many TorchTrainers as the cluster's CPUs/GPUs hold (workers >= 1).
    parallel: int | None = Field(None, ge=1)
    bootstrap: int = Field(2000, ge=100)  # resamples for the paired intervals
    experiment: ExperimentConfig = ExperimentConfig()

    @field_validator("benchmarks")
    @classmethod
    def _distinct(cls, benchmarks: list[Benchmark]) -> list[Benchmark]:
        names = [b.name for b in benchmarks]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"benchmarks must be a non-empty list without repeats, got {names}")
        return benchmarks
