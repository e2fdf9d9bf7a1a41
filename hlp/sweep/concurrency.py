"""How many trials a sweep runs at once: never more than the cluster can place.

A trial's driver reserves no CPU and its workers are placed only once its TorchTrainer starts,
so Tune alone would start `search.max_concurrent` trials whatever the cluster holds, and the
trials beyond it would wait on workers that cannot be placed (issue 15: 36 start-up timeouts in
12 minutes, no epoch trained). `ClusterLimiter` lowers the limit to what the live nodes hold and
raises it again as nodes join; `StopWhenUnplaceable` ends the search at the first trial whose
workers did not start within resources.start_timeout_s, since the trials after it would wait as
long for the same reason.
"""

from __future__ import annotations

import copy
import time

import cloudpickle
import ray
from ray.tune import Callback
from ray.tune.search import ConcurrencyLimiter, Searcher

from hlp.cluster import to_stderr
from hlp.config import ExperimentConfig
from hlp.placement import PlacementError, alive_nodes, cluster_size, runs_at_once, worker_resources
from hlp.train.runs import run_workers, trial_replicas, workers_key

RECHECK_S = 5.0  # how stale the node list may be; Tune asks before each trial it starts, every 0.1 s when idle


def trial_workers(cfg: ExperimentConfig) -> tuple[int, str]:
    """A trial's Ray Train workers (one per replica, else resources.workers) and the key that sets them."""
    replicas = trial_replicas(cfg)
    return max(run_workers(cfg, replicas), 1), workers_key(replicas)  # workers: 0 trains in the trial's process


class ClusterLimiter(ConcurrencyLimiter):
    """Tune's ConcurrencyLimiter with a limit that follows the cluster: search.max_concurrent,
    lowered to the trials whose workers the live nodes hold and raised back as nodes join. At
    least one trial runs even when none fits: an autoscaler adds nodes for the workers it sees
    waiting, and resources.start_timeout_s bounds that wait."""

    def __init__(self, searcher: Searcher, cfg: ExperimentConfig, log=to_stderr):
        super().__init__(searcher, max_concurrent=cfg.search.max_concurrent)
        self.ceiling = cfg.search.max_concurrent
        self.need = worker_resources(cfg.resources)
        self.workers = trial_workers(cfg)[0]
        self._log = log
        self._said = self.ceiling  # the limit this process last said; a resumed sweep says it again
        self._checked_at = 0.0  # wall clock: it survives the pickle of a resumed sweep

    def suggest(self, trial_id: str) -> dict | None:
        if time.time() - self._checked_at >= RECHECK_S:
            self.follow_cluster()
        return super().suggest(trial_id)

    def follow_cluster(self) -> int:
        """Set the limit from the nodes alive now; say so when it changes. Returns it."""
        self._checked_at = time.time()
        nodes = alive_nodes()
        limit = max(1, min(self.ceiling, runs_at_once(self.need, self.workers, nodes)))
        if limit != self._said:
            self._log(f"search.max_concurrent {self._said} -> {limit}: "
                      f"{cluster_size(self.need, self.workers, nodes, 'a trial')}")
            self._said = limit
        self.max_concurrent = limit
        return limit

    # Not pickled: the log (it may be a closure; a restored sweep logs to stderr) and what was said.
    _PER_PROCESS = ("_log", "_said")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._PER_PROCESS}

    def __setstate__(self, state: dict) -> None:
        """A resumed sweep says its limit at once: it may have every trial already and never ask
        for another."""
        self.__dict__.update(state)
        self._log, self._said = to_stderr, self.ceiling
        if ray.is_initialized():
            self.follow_cluster()

    def get_state(self) -> dict:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in ("searcher", *self._PER_PROCESS)})


class StopWhenUnplaceable(Callback):
    """Ends the search, with the trial's own error, when a trial's workers could not be placed.
    The trial stays ERROR (FAILED in MLflow) and `--resume` retries it with Tune's resume_errored."""

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = _trial_error(trial)
        if isinstance(error, PlacementError):
            raise error  # Tune stops its loop and raises a TuneError caused by it (see `placement_error`)


def placement_error(exc: BaseException) -> PlacementError | None:
    """The PlacementError among an exception's causes: Tune raises a TuneError from it."""
    while exc is not None:
        if isinstance(exc, PlacementError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _trial_error(trial) -> BaseException | None:
    """The trial's exception, read from its local error file: when the callback runs, the copy in
    storage (what `trial.get_pickled_error()` reads) is not yet synced."""
    path = trial.pickled_error_file
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            error = cloudpickle.load(f)
    except (OSError, EOFError, cloudpickle.pickle.UnpicklingError):
        return None
    return getattr(error, "cause", None) or error
