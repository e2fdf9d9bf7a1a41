"""The model file `hlp train` and sweeps write and `hlp predict` reads.

Plain containers of numbers, strings and tensors, so it loads with
`torch.load(weights_only=True)` (no pickled code runs). It records everything needed to
score a new video: the model settings, the input sizes, the scoring the validation split
chose, and the extractors (with the clip grid) the training features came from.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from hlp.config import DataConfig, ModelConfig
from hlp.data.feature_store import FeatureStore
from hlp.models.settings import LITERAL
from hlp.storage import filesystem, torch_load_refusal
from hlp.train.loop import FitResult, build_network

FORMAT = "hlp-model/1"
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


def load(path: str) -> ModelFile:
    fs, inner = filesystem(path)
    if not fs.exists(inner):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        content = torch.load(io.BytesIO(fs.cat_file(inner)), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad or unsafe file
        raise CheckpointError(_load_refusal(path, exc)) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an hlp model file (expected format {FORMAT!r}; "
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
