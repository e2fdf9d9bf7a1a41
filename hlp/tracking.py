"""MLflow tracking through an explicit client and run id, never the fluent global run.

An explicit run id lets any process (a Ray worker, a Tune trial) log to the same run, and
keeps two runs in one process from mixing. The default store is `sqlite:///mlflow.db`: the
plain `./mlruns` file store is refused by MLflow 3 unless explicitly allowed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

_MAX_PARAM = 6000  # MLflow's limit on a param value's length
_PROBE_TIMEOUT_S = 5  # a reachable server answers a one-row search well within this
# Tags that say how a run ended the last time; a reopened run is running again, so they go.
_END_TAGS = ("stopped_early", "stopped_at_epoch")
_INPUT_ATTEMPTS = 4
# The store's word for a row that another client inserted first (SQLite, PostgreSQL, MySQL).
_DUPLICATE = re.compile(r"UNIQUE constraint failed|duplicate key value|Duplicate entry|IntegrityError")
# MLflow 3's UI reads this tag to open an experiment as model training (runs, metrics, models);
# without it, it opens a GenAI project (traces, judges). Its values, from the UI's own bundle:
# genai_development, custom_model_development, finetuning, ...
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


class TrackingError(RuntimeError):
    """The tracking store cannot be used; raised before any training starts."""


def check_reachable(uri: str) -> None:
    """Fail in seconds, naming tracking.uri, rather than after MLflow's minutes of HTTP retries
    or in its traceback from the first run (a database driver missing, credentials refused).

    The probe is the client's own request (one experiment search), so the credentials that
    MLflow reads from the environment (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN) apply to it. A
    file store is not probed: opening one creates it.
    """
    uri = absolute_uri(uri)
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise TrackingError(f"tracking.uri {uri}: folder {folder} does not exist")
        return
    if "://" not in uri and uri != "databricks" or uri.startswith("file:"):
        return
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    saved = {v.name: os.environ.get(v.name) for v in (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT)}
    os.environ.update({MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "0", MLFLOW_HTTP_REQUEST_TIMEOUT.name: str(_PROBE_TIMEOUT_S)})
    try:
        _client(uri).search_experiments(max_results=1)
    except TrackingError:
        raise
    except Exception as exc:  # connection refused, DNS, TLS, 401/403, 5xx: all mean "cannot track here"
        raise TrackingError(f"tracking.uri {uri}: the MLflow store cannot be used: {_reason(exc)}") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _client(uri: str):
    """MLflow's client of the store. MLflow opens the store right here, so one it cannot open (a
    database driver not installed, a file store MLflow 3 refuses) is named by key, not traced."""
    from mlflow.tracking import MlflowClient

    uri = absolute_uri(uri)
    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as exc:
        raise TrackingError(f"tracking.uri {uri}: MLflow cannot open this store: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """Why a store cannot be used, in words: MLflow's own text of a refused connection is 300
    characters of urllib3 internals."""
    text = str(exc)
    if "NameResolutionError" in text or "Name or service not known" in text:
        return "its host name does not resolve"
    if "Connection refused" in text or "NewConnectionError" in text:
        return "nothing answers there (connection refused); is the MLflow server running?"
    if "timed out" in text.lower():
        return f"no answer within {_PROBE_TIMEOUT_S} s"
    return _first_line(exc)


def _experiment(client, uri: str, name: str) -> str:
    """The experiment's id, creating it if needed, with the kind tag by which MLflow's UI opens a
    training project (runs, metrics, models) rather than a GenAI one (traces, judges)."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, artifact_location=artifact_location(uri, name), tags=EXPERIMENT_KIND)
    if any(k not in found.tags for k in EXPERIMENT_KIND):  # made before hlp tagged its experiments; a kind the user set stays
        for key, value in EXPERIMENT_KIND.items():
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


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
        experiment_id = _experiment(self.client, uri, experiment)
        self.run_id = reuse_run_id or self._find(experiment_id, parent_run_id, reuse_tag)
        if self.run_id:
            self._reopen()
            return
        commit = git_commit()
        # mlflow.source.*: what the runs table's Source column shows (the fluent API's own tags)
        all_tags = {"mlflow.runName": run_name, "git_commit": commit, "mlflow.source.name": "hlp",
                    "mlflow.source.type": "LOCAL", **({"mlflow.source.git.commit": commit} if commit != "unknown" else {}),
                    **tags}
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

    def log_inputs(self, inputs: list) -> None:
        """The run's data (`hlp.data.inputs.DataInput`s) as MLflow dataset inputs, with their
        context; MLflow keeps one of each (name, digest, context), so a reopened run adds none."""
        if self.enabled and inputs:
            from mlflow.entities import Dataset, DatasetInput, InputTag
            from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

            datasets = [DatasetInput(Dataset(i.name, i.digest, "s3" if i.source.startswith("s3://") else "local",
                                             json.dumps({"uri": i.source}), profile=json.dumps(i.profile)),
                                     tags=[InputTag(MLFLOW_DATASET_CONTEXT, i.context)]) for i in inputs]
            for attempt in range(_INPUT_ATTEMPTS):
                try:
                    self.client.log_inputs(self.run_id, datasets=datasets)
                    return
                except Exception as exc:  # noqa: BLE001 - MLflow wraps the store's error in several types
                    # Runs that log the same dataset at once (a sweep's finals, trials side by side)
                    # race to insert it once per experiment; the loser finds it there next time.
                    if attempt + 1 == _INPUT_ATTEMPTS or not _DUPLICATE.search(str(exc)):
                        raise
                    time.sleep(0.2 * (attempt + 1))

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            from mlflow.entities import RunTag

            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def _children(self) -> list:
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return self.client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{self.run_id}'")

    def close_children(self, status: str = "KILLED") -> int:
        """End every child run still RUNNING with `status`: on an interrupted sweep, its trials
        and final runs end KILLED with it. The number ended."""
        if not self.enabled:
            return 0
        running = [r for r in self._children() if r.info.status == "RUNNING"]
        for run in running:
            self.client.set_terminated(run.info.run_id, status)
        return len(running)

    def end_stopped_trials(self, stopped: dict[str, int]) -> int:
        """The trials that ASHA stopped (trial id -> the epoch each reached) end FINISHED, tagged
        `stopped_early` and `stopped_at_epoch`: they ran as asked, and KILLED is for Ctrl-C. Tune
        stops such a trial by ending its thread, which its own handler may record first as an
        interrupt: Tune's word decides. The number marked."""
        if not self.enabled or not stopped:
            return 0
        runs = [r for r in self._children() if r.data.tags.get("trial_id") in stopped]
        for run in runs:
            epoch = stopped[run.data.tags["trial_id"]]
            self.client.set_tag(run.info.run_id, "stopped_early", "true")
            self.client.set_tag(run.info.run_id, "stopped_at_epoch", str(epoch))
            self.client.set_terminated(run.info.run_id, "FINISHED")
        return len(runs)

    def delete_children(self, tag: str, keep: set[str]) -> dict[str, str]:
        """Delete this run's children whose `tag` holds a value outside `keep`: {value: run id}.
        MLflow's delete is a soft one (`mlflow runs restore --run-id ID` brings a run back)."""
        if not self.enabled:
            return {}
        gone = {r.data.tags[tag]: r.info.run_id for r in self._children()
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
