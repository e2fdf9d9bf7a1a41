"""Optuna's optimisation history and parameter importances as PNG, from Tune's results.

The study is rebuilt from the finished trials with Optuna's public API (`create_trial`), so
the figures do not depend on the searcher's private state and also work after `--resume`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from hlp.config import SearchParam  # noqa: E402
from hlp.sweep.space import tune_space  # noqa: E402


def study_from(grid, space: dict[str, SearchParam]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    distributions = OptunaSearch.convert_search_space(tune_space(space))  # exactly what TPE sampled from
    for result in grid:
        value = (result.metrics or {}).get("val_map")
        if value is None or result.error or math.isnan(value):  # Optuna refuses NaN objectives
            continue
        params = {k: result.config[k] for k in space}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=float(value)))
    return study


def optuna_figures(grid, space: dict[str, SearchParam], output: Path) -> list[Path]:
    """Saved PNG paths; importances need at least two finished trials that differ."""
    study = study_from(grid, space)
    saved = []
    plots = {"optimization_history.png": optuna.visualization.matplotlib.plot_optimization_history}
    if len(study.trials) >= 2:
        plots["param_importances.png"] = optuna.visualization.matplotlib.plot_param_importances
    for name, plot in plots.items():
        try:
            plot(study)
        except (ValueError, RuntimeError):  # e.g. importances of identical trials
            plt.close("all")
            continue
        path = output / name
        plt.gcf().set_size_inches(8, 5)
        plt.tight_layout()
        plt.savefig(path, dpi=90)
        plt.close("all")
        saved.append(path)
    return saved
