"""The model file `hlp train` and sweeps write and `hlp predict` reads.

Plain containers of numbers, strings and tensors, so it loads with
`torch.load(weights_only=True)` (no pickled code runs). It records everything needed to
score a new video: the model settings, the input sizes, the scoring the validation split
chose, and the extractors (with the clip grid) the training features came from.

MLflow gets it as the one artifact of an MLflow Model (`log_mlflow_model`), whose code is
hlp/predict/mlflow_pyfunc.py, not a pickled module.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hlp.config import DataConfig, ModelConfig
from hlp.data.feature_store import FeatureStore
from hlp.models.settings import LITERAL
from hlp.storage import filesystem, torch_load_refusal
from hlp.train.loop import FitResult, build_network

FORMAT = "hlp-model/1"
# The key of the model file among the artifacts of the MLflow Model that wraps it (`hlp train`
# logs one per domain; `hlp predict --model` reads this file out of it, never the model's code).
MLFLOW_ARTIFACT = "hlp_model"
# The MLflow Model's code: a file MLflow runs when it loads the model, not an import of hlp.train
# (which imports nothing of hlp.predict, where the serving side of this file lives).
PYFUNC_CODE = Path(__file__).resolve().parents[1] / "predict" / "mlflow_pyfunc.py"
# A sweep's two final runs log from threads of one driver: MLflow's tracking URI is global and
# concurrent registrations of one name could race for a version number.
_LOGGING = threading.Lock()
# Files written before the standard block: their settings lack these keys, which then meant eq. 1-3.
LITERAL_BEFORE_ISSUE_11 = {k: v for k, v in LITERAL.items() if k != "dropout"}


class CheckpointError(ValueError):
    """A file that is not an hlp model, or one that does not fit the features at hand."""


@dataclass(frozen=True)
class ModelFile:
    model: torch.nn.Module
    domain: str
    scoring: str
    window: int
    stride: int
    visual_dim: int
    audio_dim: int
    features: dict | None  # the store's meta (extractors, clip grid); None: the UMT release's features
    meta: dict


def payload(result: FitResult, model: ModelConfig, window: int, stride: int, features: dict | None,
            normalize: str, run: str | None = None) -> dict:
    """`normalize` is data.normalize: the model's input normalisation, without which it cannot be
    rebuilt. `run` names the Ray run that trained it (`hlp train` reads it back on a rerun)."""
    return {"format": FORMAT, "domain": result.domain, "seed": result.seed, "best_epoch": result.best_epoch,
            "run": run,
            "normalize": normalize, "scoring": result.scoring, "val_map": result.val_map, "window": window, "stride": stride,
            "model": model.model_dump(), "visual_dim": result.visual_dim, "audio_dim": result.audio_dim,
            "features": features, "state_dict": result.state_dict}


def features_of(data: DataConfig) -> dict | None:
    """The extractors behind the training features: a store records them; the UMT release's I3D
    and PANN features cannot be recomputed here."""
    if data.format != "parquet":
        return None

    return FeatureStore.open(data.features).meta


def save(path: str, content: dict) -> None:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    fs, inner = filesystem(path)
    fs.pipe_file(inner, buffer.getvalue())


def _load_refusal(path: str, exc: Exception) -> str:
    refusal = torch_load_refusal(exc)
    if refusal and refusal.startswith("not a safe"):
        return f"{path}: {refusal}"
    if refusal:
        return f"{path}: not a loadable checkpoint ({refusal})"
    text = str(exc).strip()
    first_line = text.splitlines()[0][:300] if text else "empty or truncated file"
    return f"{path}: not a loadable checkpoint ({type(exc).__name__}: {first_line})"


def load(path: str, shown: str | None = None) -> ModelFile:
    """`shown`: how errors name the file, when `path` is a download's temporary copy."""
    fs, inner = filesystem(path)
    shown = shown or path
    if not fs.exists(inner):
        raise CheckpointError(f"checkpoint not found: {shown}")
    try:
        content = torch.load(io.BytesIO(fs.cat_file(inner)), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad or unsafe file
        raise CheckpointError(_load_refusal(shown, exc)) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"{shown}: not an hlp model file (expected format {FORMAT!r}; "
                              f"`hlp train` writes model_<domain>_seed<N>.pt)")
    # Files written before the standard block existed hold the literal reading's model settings.
    settings = {**LITERAL_BEFORE_ISSUE_11, **content["model"]}
    model = build_network(ModelConfig(**settings), content["visual_dim"], content["audio_dim"],
                          content.get("normalize", "none"))
    model.load_state_dict(content["state_dict"])
    return ModelFile(model=model.eval(), domain=content["domain"], scoring=content["scoring"],
                     window=content["window"], stride=content["stride"], visual_dim=content["visual_dim"],
                     audio_dim=content["audio_dim"], features=content["features"],
                     meta={k: v for k, v in content.items() if k != "state_dict"})


def weights_of_run(path: Path, run: str) -> dict[str, torch.Tensor] | None:
    """The weights in the model file at `path` if the Ray run `run` wrote it, else None."""
    if not path.exists():
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable file is simply not this run's
        return None
    return content.get("state_dict") if isinstance(content, dict) and content.get("run") == run else None


def log_mlflow_model(uri: str, run_id: str, path: Path, domain: str, seed: int, example: dict[str, np.ndarray],
                     register: str | None = None) -> tuple[str, str | None]:
    """The model file at `path` as the MLflow Model `model-<domain>` of the run (a LoggedModel:
    `runs:/<run>/model-<domain>`, `models:/<model_id>`), with `example` as its input example;
    with `register`, a version of that registered model, tagged with the domain and seed. A
    reopened run (the same run key: the same model) keeps the model and the version it has
    rather than adding copies. (The model's id, its version or None.)"""
    import mlflow  # deferred: only a tracked run needs MLflow

    name, tags = f"model-{domain}", {"domain": domain, "seed": str(seed)}
    if os.environ.get("HLP_VERBOSE") != "1":  # as hlp.cluster.verbose (which imports Ray): MLflow's chatter
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
    client = mlflow.MlflowClient(uri, registry_uri=uri)  # explicit: a global registry URI set earlier would win
    experiment = client.get_run(run_id).info.experiment_id
    with _LOGGING:
        mlflow.set_tracking_uri(uri)  # pyfunc.log_model reads MLflow's global one
        before = client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}' AND name = "
                                                                         f"'{name}' AND status = 'READY'")
        model_id = before[0].model_id if before else _log_pyfunc(client, experiment, run_id, name, tags, path, example)
        if not register:
            return model_id, None
        known = [v.version for v in client.search_model_versions(f"name = '{register}'")
                 if v.source == f"models:/{model_id}"]
        return model_id, str(known[0] if known else _register(client, register, model_id, run_id, tags))


def _register(client, name: str, model_id: str, run_id: str, tags: dict[str, str]) -> str:
    """A new version of the registered model `name` (created if needed) for the LoggedModel, by
    the explicit client: MLflow's fluent register_model would take the registry from the
    environment (MLFLOW_REGISTRY_URI, which MLflow itself sets and child processes inherit)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.create_model_version(name, source=f"models:/{model_id}", run_id=run_id, tags=tags,
                                       model_id=model_id).version


def _log_pyfunc(client, experiment: str, run_id: str, name: str, tags: dict[str, str], path: Path,
                example: dict[str, np.ndarray]) -> str:
    """The pyfunc of hlp/predict/mlflow_pyfunc.py around the file at `path`. Its signature: one
    video's (T, Dv) and (T, Da) float32 clip features in, T scores out."""
    import mlflow  # deferred: only a tracked run needs MLflow
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    example = {k: np.asarray(v, np.float32) for k, v in example.items()}
    spec = [TensorSpec(np.dtype(np.float32), (-1, example[k].shape[1]), k) for k in ("visual", "audio")]
    # Made here, in the run's experiment and linked to the run: pyfunc.log_model would take both
    # from MLflow's global active run, which hlp never opens (its runs are the Tracker's).
    model_id = client.create_logged_model(experiment, name=name, source_run_id=run_id, tags=tags).model_id
    mlflow.pyfunc.log_model(
        name=name, model_id=model_id, python_model=str(PYFUNC_CODE), artifacts={MLFLOW_ARTIFACT: str(path)},
        signature=ModelSignature(Schema(spec), Schema([TensorSpec(np.dtype(np.float32), (-1,))])),
        input_example=example, pip_requirements=[  # given, so MLflow infers none in a subprocess
            f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"])
    client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
    return model_id
