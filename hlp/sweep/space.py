"""The search space of `hlp sweep`: its checks (before any trial starts) and its Tune form.

Kept apart from the search so that the figures, which need the same distributions that TPE
sampled from, import the space and not the sweep; and without Ray at import, so that `hlp config
show` runs the very checks `hlp sweep` runs (one function: the two cannot drift apart) in a moment.
"""

from __future__ import annotations

import difflib
from typing import Any

from hlp.config import ConfigError, ExperimentConfig, SearchParam, flatten


def check_space(cfg: ExperimentConfig) -> None:
    """What a sweep needs of the whole space, before any trial starts, naming the key; each
    dimension's own bounds are checked where the config is read (`SearchParam`)."""
    known = flatten(cfg)
    if not cfg.search.space:
        raise ConfigError("search.space is empty: nothing to sweep")
    replicas = len(cfg.search.seeds) * (cfg.eval.folds if cfg.eval.selection == "kfold" else 1)
    if replicas > 1 and cfg.resources.workers != 1:  # each (seed, fold) is one worker of the trial
        raise ConfigError(f"a trial trains {replicas} replicas (search.seeds x the folds of eval.selection kfold), "
                          f"one worker each: resources.workers must be 1, got {cfg.resources.workers}")
    _check_grace_period(cfg)
    for key in cfg.search.space:
        if key not in known:
            hint = difflib.get_close_matches(key, list(known), n=1)
            raise ConfigError(f"search.space: unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))


def _check_grace_period(cfg: ExperimentConfig) -> None:
    """ASHA may stop a trial only after `grace_period` epochs: with fewer epochs it never could, and
    past its max_t (train.epochs + 2) Ray's scheduler fails inside Tune with an assertion that names
    neither key."""
    if cfg.train.epochs < cfg.search.grace_period:
        raise ConfigError(f"search.grace_period ({cfg.search.grace_period}) exceeds train.epochs "
                          f"({cfg.train.epochs}): ASHA could never stop a trial; lower search.grace_period "
                          f"or raise train.epochs")


def tune_space(space: dict[str, SearchParam]) -> dict[str, Any]:
    from ray import tune

    def one(p: SearchParam):
        if p.type == "float":
            return tune.uniform(p.low, p.high)
        if p.type == "logfloat":
            return tune.loguniform(p.low, p.high)
        if p.type == "int":
            return tune.qrandint(int(p.low), int(p.high), 1)  # inclusive of high, unlike randint
        return tune.choice(p.values)

    return {key: one(p) for key, p in space.items()}
