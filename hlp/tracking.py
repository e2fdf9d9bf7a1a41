"""MLflow tracking through an explicit client and run id, never the fluent global run.

An explicit run id lets any process (a Ray worker, a Tune trial) log to the same run, and
keeps two runs in one process from mixing. The default store is `sqlite:///mlflow.db`: the
plain `./mlruns` file store is refused by MLflow 3 unless explicitly allowed.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

_MAX_PARAM = 6000  # MLflow's limit on a param value's length
_PROBE_TIMEOUT_S = 5  # a reachable server answers a one-row search well within this
# Tags that say how a run ended the last time; a reopened run is running again, so they go.
_END_TAGS = ("stopped_early",)


class TrackingError(RuntimeError):
    """The tracking store cannot be used; raised before any training starts."""


def check_reachable(uri: str) -> None:
    """Fail in seconds, naming the URI, rather than after MLflow's minutes of HTTP retries.

    The probe is the client's own request (one experiment search), so the credentials that
    MLflow reads from the environment (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN) apply to it.
    """
    uri = absolute_uri(uri)
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise TrackingError(f"tracking.uri {uri}: folder {folder} does not exist")
        return
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    saved = {v.name: os.environ.get(v.name) for v in (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT)}
    os.environ.update({MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "0", MLFLOW_HTTP_REQUEST_TIMEOUT.name: str(_PROBE_TIMEOUT_S)})
    try:
        _client(uri).search_experiments(max_results=1)
    except Exception as exc:  # connection refused, DNS, TLS, 401/403, 5xx: all mean "cannot track here"
        raise TrackingError(f"MLflow tracking server {uri} cannot be used: {_first_line(exc)}") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=absolute_uri(uri))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def absolute_uri(uri: str) -> str:
    """`sqlite:///rel.db` -> an absolute path, so Ray workers (other working dirs) log to the same store."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def end_status(kind: type[BaseException] | None) -> str:
    """The MLflow status of a run left by `kind`: nothing raised; an interrupt (Ctrl-C, SIGTERM
    that the CLI turns into one, or the `sys.exit` of a SIGTERM handler of Ray's); or any other
    exception."""
    if kind is None:
        return "FINISHED"
    return "KILLED" if issubclass(kind, (KeyboardInterrupt, SystemExit)) else "FAILED"


def artifact_location(uri: str, experiment: str) -> str | None:
    """Beside a SQLite store, `<folder of the .db>/mlartifacts/<experiment>`: MLflow's default
    (`./mlruns` of whichever working directory created the experiment) scatters artifacts away
    from the runs that name them. None (the store's default) for a server or another store."""
    uri = absolute_uri(uri)
    if not uri.startswith("sqlite:///"):
        return None
    folder = Path(uri[len("sqlite:///"):]).parent / "mlartifacts" / re.sub(r"[^\w.-]", "_", experiment)
    return folder.as_uri()


def local_store(uri: str, experiment: str) -> dict[str, str]:
    """Where a SQLite store keeps an experiment on this machine: the database and the artifact
    folder beside it (nothing for a server, whose storage is its own)."""
    uri = absolute_uri(uri)
    if not uri.startswith("sqlite:///"):
        return {}
    from urllib.parse import unquote, urlparse

    folder = unquote(urlparse(artifact_location(uri, experiment)).path)
    return {"MLflow store": uri[len("sqlite:///"):], f"MLflow artifacts of {experiment}": folder}


def run_tags(cfg) -> dict[str, str]:
    """The tags every run of an experiment carries, so the UI can group and filter them."""
    return {"dataset": cfg.data.dataset, "protocol": cfg.data.protocol, "variant": cfg.model.variant}


class Tracker:
    """One MLflow run; every method is a no-op when tracking is disabled.

    As a context manager it ends the run however the block ends: FINISHED, FAILED on an
    exception, KILLED on an interrupt, so no run is left RUNNING by a crash or a Ctrl-C.
    """

    @classmethod
    def attach(cls, uri: str, run_id: str | None) -> "Tracker":
        """A handle on an existing run (from a worker process); disabled when run_id is None."""
        tracker = cls.__new__(cls)
        tracker.enabled, tracker.run_id = run_id is not None, run_id
        if run_id is not None:
            tracker.client = _client(uri)
        return tracker

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str], enabled: bool = True,
                 parent_run_id: str | None = None, reuse_tag: tuple[str, str] | None = None,
                 reuse_run_id: str | None = None) -> None:
        """Create a run, or reopen one: `reuse_run_id`, or the run of this parent carrying
        `reuse_tag`, so that a resumed sweep never duplicates a run."""
        self.enabled, self.reopened = enabled, False
        self.run_id: str | None = None
        if not enabled:
            return
        self.client = _client(uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=artifact_location(uri, experiment))
        self.run_id = reuse_run_id or self._find(experiment_id, parent_run_id, reuse_tag)
        if self.run_id:
            self._reopen()
            return
        all_tags = {"mlflow.runName": run_name, "git_commit": git_commit(), **tags}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        self.run_id = self.client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id

    def _reopen(self) -> None:
        """Running again: the status, and none of the tags that said how it ended before."""
        self.reopened = True
        self.client.update_run(self.run_id, status="RUNNING")
        tags = self.client.get_run(self.run_id).data.tags
        for key in _END_TAGS:
            if key in tags:
                self.client.delete_tag(self.run_id, key)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        self.finish(end_status(kind))

    def _find(self, experiment_id: str, parent_run_id: str | None, tag: tuple[str, str] | None) -> str | None:
        if tag is None:
            return None
        query = f"tags.{tag[0]} = '{tag[1]}'"
        if parent_run_id:
            query += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
        runs = self.client.search_runs([experiment_id], filter_string=query, max_results=1)
        return runs[0].info.run_id if runs else None

    def log_params(self, params: dict[str, Any]) -> None:
        """A reopened run keeps the params it has (MLflow refuses to change one: a rerun that
        only changes resources, which the run key leaves out, would fail) and gets the new ones."""
        if self.enabled:
            from mlflow.entities import Param

            known = self.client.get_run(self.run_id).data.params if self.reopened else {}
            batch = [Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items() if k not in known]
            for start in range(0, len(batch), 100):
                self.client.log_batch(self.run_id, params=batch[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if self.enabled and metrics:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
            for start in range(0, len(batch), 500):
                self.client.log_batch(self.run_id, metrics=batch[start : start + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            from mlflow.entities import RunTag

            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def close_children(self, stopped_trials: set[str], status: str = "KILLED") -> int:
        """Mark the child runs of trials that ASHA stopped, and any child still RUNNING (on an
        interrupted sweep: its trials and final runs), as stopped early. Whether a stopped
        trial's own handler got to end its run first (as FAILED, when Tune interrupts it) is a
        race, so Tune's word decides, not the run status."""
        if not self.enabled:
            return 0
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        query = f"tags.`mlflow.parentRunId` = '{self.run_id}'"
        stopped = set(stopped_trials) - {None}  # a final run has no trial_id
        runs = [r for r in self.client.search_runs([experiment_id], filter_string=query)
                if r.info.status == "RUNNING" or r.data.tags.get("trial_id") in stopped]
        for run in runs:
            self.client.set_tag(run.info.run_id, "stopped_early", "true")
            self.client.set_terminated(run.info.run_id, status)
        return len(runs)

    def delete_children(self, tag: str, keep: set[str]) -> dict[str, str]:
        """Delete this run's children whose `tag` holds a value outside `keep`: {value: run id}.
        MLflow's delete is a soft one (`mlflow runs restore --run-id ID` brings a run back)."""
        if not self.enabled:
            return {}
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        query = f"tags.`mlflow.parentRunId` = '{self.run_id}'"
        gone = {r.data.tags[tag]: r.info.run_id for r in self.client.search_runs([experiment_id], filter_string=query)
                if tag in r.data.tags and r.data.tags[tag] not in keep}
        for run_id in gone.values():
            self.client.delete_run(run_id)
        return gone

    def finish(self, status: str = "FINISHED") -> None:
        """End the run unless it has already ended: the first end wins. An interrupted sweep
        closes its final runs as KILLED from the main thread while their trainings are still
        unwinding, and their own failure must not overwrite that."""
        if self.enabled and self.client.get_run(self.run_id).info.status == "RUNNING":
            self.client.set_terminated(self.run_id, status)
