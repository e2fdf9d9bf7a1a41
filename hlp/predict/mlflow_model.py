"""`hlp predict --model URI`: the model of a registry version, a run, a LoggedModel or a local
file or MLflow Model folder, read as safely as `--checkpoint`.

MLflow only downloads the model's files. Of those, hlp reads the model file (the `hlp_model`
artifact of the MLflow Models `hlp train` logs) with its own `torch.load(weights_only=True)`: the
model's code is never run and nothing is unpickled, so a model from a shared store is as safe to
use as a file of one's own. A model of another kind (a module that mlflow.pytorch.log_model
pickled) gets the refusal such a file gets from `--checkpoint`, naming the file.
"""

from __future__ import annotations

import os

import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import yaml

from hlp.tracking import absolute_uri
from hlp.train import model_file
from hlp.train.model_file import CheckpointError, ModelFile

TORCH_FILES = (".pt", ".pth")  # where another flavor (mlflow.pytorch) keeps its model


def load_model(uri: str, tracking_uri: str) -> ModelFile:
    """The hlp model behind `uri`: `models:/NAME/VERSION`, `models:/<model_id>`, `runs:/RUN/PATH`
    (or another artifact URI MLflow can download) through the store at `tracking_uri`; else a
    local path (an hlp model file, or an MLflow Model folder)."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        return _read(Path(urlparse(uri).path if scheme else uri), uri)
    import mlflow  # deferred: only a URI needs MLflow (a local file is read without it)
    from mlflow.exceptions import MlflowException

    tracking_uri = absolute_uri(tracking_uri)
    store = Path(tracking_uri.removeprefix("sqlite:///"))
    if tracking_uri.startswith("sqlite:///") and not store.is_file():  # MLflow would create an empty one
        raise CheckpointError(f"--model {uri}: no tracking store at {store} (--tracking-uri {tracking_uri})")
    # MLflow 3.18 finds a LoggedModel or a registry version through its global URIs, whatever
    # download_artifacts is given; left unset, it would make an empty ./mlflow.db and search there.
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)  # (MLflow exports both to the environment: put back below)
    mlflow.set_registry_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="hlp-model-") as tmp, _restored(saved):
        try:
            # A registry version through an explicit client: MLflow's own resolution of
            # models:/NAME/VERSION keeps the registry of the first store a process asked.
            source = _registered_source(uri, tracking_uri) or uri
            local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri,
                                                        registry_uri=tracking_uri)
        except (MlflowException, OSError) as exc:
            text = str(exc).strip().splitlines()
            raise CheckpointError(f"--model {uri}: {text[0][:300] if text else type(exc).__name__} "
                                  f"(tracking store {tracking_uri})") from None
        return _read(Path(local), uri.rstrip("/"))


@contextmanager
def _restored(saved: dict[str, str | None]):
    """MLflow's URIs as they were: a process that resolves a model (a notebook, a test) must not
    leave them, and the environment its later child processes inherit, pointing at this store."""
    import mlflow

    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _registered_source(uri: str, tracking_uri: str) -> str | None:
    """`models:/NAME/VERSION`'s model (`models:/<model_id>`, or the version's source); None for
    another URI."""
    parts = uri.removeprefix("models:/").split("/")
    if not uri.startswith("models:/") or len(parts) != 2 or not parts[1].isdigit():
        return None
    from mlflow.tracking import MlflowClient

    version = MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version(parts[0], parts[1])
    return f"models:/{version.model_id}" if getattr(version, "model_id", None) else version.source


def _read(path: Path, shown: str) -> ModelFile:
    """A file is an hlp model file; a folder is an MLflow Model whose model file is read."""
    if path.is_dir():
        inner = model_file_in(path, shown)
        return model_file.load(str(path / inner), shown=f"{shown}/{inner}")
    return model_file.load(str(path), shown=shown)


def model_file_in(folder: Path, shown: str) -> str:
    """The path, inside an MLflow Model folder, of the file hlp reads: the pyfunc's `hlp_model`
    artifact; in a model of another flavor its lone PyTorch file, which the loader then judges."""
    if not (folder / "MLmodel").is_file():
        raise CheckpointError(f"{shown}: a folder without an MLmodel file, so not an MLflow Model")
    flavors = (yaml.safe_load((folder / "MLmodel").read_text()) or {}).get("flavors") or {}
    artifact = ((flavors.get("python_function") or {}).get("artifacts") or {}).get(model_file.MLFLOW_ARTIFACT)
    if artifact:
        if not (folder / artifact["path"]).resolve().is_relative_to(folder.resolve()):
            raise CheckpointError(f"{shown}: its {model_file.MLFLOW_ARTIFACT!r} artifact lies outside the model")
        return artifact["path"]
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in TORCH_FILES)
    if len(found) == 1:
        return found[0]
    raise CheckpointError(f"{shown}: an MLflow Model ({', '.join(sorted(flavors)) or 'no flavor'}) without an hlp "
                          f"model file (the {model_file.MLFLOW_ARTIFACT!r} artifact of the models `hlp train` logs)")
