"""Typed experiment configuration, loaded from YAML with `--set` overrides.

One frozen pydantic tree per experiment: unknown keys are refused (with the closest valid
key suggested) and wrong types are reported with their dotted path, before any work starts.
Components are built from the fields of this tree by plain constructors; the tree itself is
never handed to models or losses.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config problem, phrased for the person who wrote the YAML."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _has_password(value: object) -> bool:
    return isinstance(value, str) and bool(urlsplit(value).password)


def _no_password(uri: str | None) -> str | None:
    """Refuse credentials inside a URI: the config is logged as MLflow params, written as YAML
    artifacts and shipped to Ray workers, so a secret there would leak everywhere."""
    if _has_password(uri):
        raise ValueError("must not embed a password (user:password@host); put credentials in the "
                         "environment instead (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, "
                         "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    return uri


class DataConfig(_Section):
    dataset: Literal["youtube", "tvsum"] = "youtube"
    root: str = "${HLP_DATA_ROOT}"
    protocol: Literal["umt", "paper"] = "umt"
    domains: list[str] | None = None
    format: Literal["umt", "parquet"] = "umt"
    # parquet: the feature store `hlp extract` (or `hlp data import-umt`) wrote; labels and
    # splits still come from `root/<dataset>/` (annotations are not features).
    features: str | None = None
    visual_streams: list[str] = ["rgb", "opt"]  # umt: video_features/<vid>_<stream>.npy, concatenated
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    on_bad: Literal["skip", "error"] = "skip"
    # Per-clip feature normalisation inside the model (so a saved model carries it); standardize
    # takes its mean and std from the training videos only.
    normalize: Literal["none", "l2", "standardize"] = "l2"  # lighthouse, QD-DETR, UniVTG; README: Recipe
    # TVSum only: soft = UMT's (sum of the 20 annotators' scores - 20) / 80 as the CE target;
    # the contrastive and ranking terms keep the binary labels.
    targets: Literal["binary", "soft"] = "binary"

    _root_has_no_secret = field_validator("root", "features")(_no_password)

    @model_validator(mode="after")
    def _store_given(self) -> "DataConfig":
        if self.format == "parquet" and not self.features:
            raise ValueError("data.format: parquet needs data.features (the feature store `hlp extract` wrote)")
        if not self.visual_streams:
            raise ValueError("data.visual_streams needs at least one stream")
        if self.targets == "soft" and self.dataset != "tvsum":
            raise ValueError("data.targets: soft needs TVSum's annotator scores (data.dataset: tvsum)")
        return self


class ModelConfig(_Section):
    variant: Literal["v_only", "a_only", "av", "cr_av", "co_av", "mlp"] = "co_av"
    d_model: int = Field(256, gt=0)
    heads: int = Field(8, gt=0)
    layers: int = Field(2, gt=0)
    d_k: int = Field(512, gt=0)
    d_v: int = Field(512, gt=0)
    ffn_dim: int = Field(1024, gt=0)
    # The standard transformer the paper builds on ([53]), as UMT and lighthouse use it: pre-norm
    # residual blocks with W_O, dropout 0.5 on the inputs and 0.1 inside. Positions are an option
    # the study found to cost validation mAP on YouTube (sine: -0.008 over 3 seeds), so off by
    # default; TVSum with soft targets prefers sine (experiments/tvsum.yaml).
    # experiments/paper-literal.yaml keeps eq. 1-3 as printed; README: Recipe gives the evidence.
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    input_dropout: float = Field(0.5, ge=0.0, lt=1.0)
    block: Literal["paper", "standard"] = "standard"
    positional: Literal["none", "sine", "learned"] = "none"
    global_init: Literal["mean", "random", "none"] = "mean"
    score_weights: dict[Literal["fused", "visual", "audio"], float] = {
        "fused": 1.0,
        "visual": 1.0,
        "audio": 1.0,
    }


class LossConfig(_Section):
    lambda_ce: float = Field(1.0, ge=0.0)
    lambda_hpcl: float = Field(0.3, ge=0.0)
    lambda_rank: float = Field(0.1, ge=0.0)
    temperature: float = Field(0.1, gt=0.0)
    margin: float = Field(0.7, ge=0.0)
    region: int = Field(3, ge=1)
    normalize: bool = True


class TrainConfig(_Section):
    seeds: list[int] = [0, 1, 2]
    # The recipe (README: Recipe): validation peaks within 8 epochs at 3e-4 and falls as the model
    # overfits; cosine decay to 0 over them, one warm-up epoch, AdamW with UMT's weight decay,
    # gradients clipped as lighthouse and QD-DETR do. The paper's Adam at 1e-4 for 20 epochs
    # barely moves validation from the untrained model's.
    epochs: int = Field(8, ge=0)
    lr: float = Field(3e-4, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    optimizer: Literal["adam", "adamw"] = "adamw"
    schedule: Literal["constant", "cosine"] = "cosine"  # cosine: per step, to 0 at the last epoch
    warmup_epochs: float = Field(1.0, ge=0.0)  # linear warm-up from 0, in epochs
    grad_clip: float | None = Field(1.0, gt=0.0)  # max global gradient norm
    ema: float | None = Field(None, gt=0.0, lt=1.0)  # decay of a weight average that validates and scores
    batch_size: int = Field(8, gt=0)
    window: int = Field(20, ge=2)
    windows_per_clip: float = Field(1.0, gt=0.0)  # windows drawn per epoch: about this x clips / window, per video
    min_ratio: float = Field(0.5, gt=0.0, le=1.0)
    patience: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1)
    checkpoint_every: int = Field(5, ge=1)  # epochs; the last epoch is always checkpointed

    @field_validator("seeds")
    @classmethod
    def _non_empty(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("train.seeds needs at least one seed")
        return seeds


class EvalConfig(_Section):
    scoring: Literal["auto", "full", "sliding"] = "auto"
    stride: int = Field(10, ge=1)
    # How the epoch (and scoring mode) is chosen without the test split:
    # carve: on data.val_fraction of the training videos, which the model never trains on;
    # kfold: the mean validation curve of `folds` folds over the training videos picks them,
    #        then one model trains on all training videos and is taken at that epoch.
    selection: Literal["carve", "kfold"] = "carve"
    folds: int = Field(4, ge=2)


class ResourcesConfig(_Section):
    """Ray Train scaling; `workers: 0` runs the loop in the driver process (debugging)."""

    workers: int = Field(1, ge=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    max_failures: int = Field(2, ge=0)  # a dead worker restarts from the last checkpoint
    storage_path: str = "ray_results"  # checkpoints: a local directory or s3://bucket/prefix
    address: str | None = None  # an existing Ray cluster; default: RAY_ADDRESS, else a local one

    _paths_have_no_secret = field_validator("storage_path", "address")(_no_password)


class TrackingConfig(_Section):
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "hlp"
    enabled: bool = True

    _uri_has_no_secret = field_validator("uri")(_no_password)


class SearchParam(_Section):
    """One dimension of the search space; `int` bounds are inclusive."""

    type: Literal["float", "logfloat", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None


class SearchConfig(_Section):
    space: dict[str, SearchParam] = {}
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(1, ge=1)
    seed: int = 0  # the TPE sampler's seed
    grace_period: int = Field(2, ge=1)  # ASHA: epochs before a trial can be stopped
    reduction_factor: int = Field(3, ge=2)


class ExperimentConfig(_Section):
    name: str = "experiment"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    search: SearchConfig = SearchConfig()


Schema = TypeVar("Schema", bound=BaseModel)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` with the value parsed as YAML, so `[dog,parkour]` is a list and `1e-3` a float."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # YAML 1.1 reads `1e-3` as a string
    return key.strip().split("."), value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                schema: type[Schema] = ExperimentConfig) -> Schema:  # type: ignore[assignment]
    """Read YAML, apply `--set` overrides, validate; errors name the file and the dotted key."""
    raw: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        raw = _read_yaml(Path(path))
    raw = apply_overrides(raw, list(overrides or []))
    return config_from_dict(raw, source, schema)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def config_from_dict(raw: dict[str, Any], source: str = "<dict>",
                     schema: type[Schema] = ExperimentConfig) -> Schema:  # type: ignore[assignment]
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e, schema) for e in exc.errors())) from None


def _describe(error: dict[str, Any], schema: type[BaseModel]) -> str:
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        hint = _closest_key(loc, schema)
        return f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
    shown = error.get("input")
    if _has_password(shown):
        shown = "<a URI with a password, not shown>"
    return f"{key}: {error['msg']} (got {shown!r})"


def _closest_key(loc: list[str], schema: type[BaseModel]) -> str | None:
    section: type[BaseModel] = schema
    for part in loc[:-1]:
        field = section.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type):
            return None
        section = field.annotation
    match = difflib.get_close_matches(loc[-1], list(section.model_fields), n=1, cutoff=0.5)
    return ".".join([*loc[:-1], match[0]]) if match else None


def with_absolute_paths(config: ExperimentConfig) -> ExperimentConfig:
    """Pin relative paths to this process's directory before Ray workers (other cwd) see them."""
    from hlp.platform.storage import resolve_root
    from hlp.platform.tracking import absolute_uri

    root = resolve_root(config.data.root)
    local = lambda p: p if "://" in p else os.path.abspath(p)  # noqa: E731
    return config.model_copy(update={
        "data": config.data.model_copy(update={"root": local(root), "features": config.data.features and
                                               local(resolve_root(config.data.features))}),
        "resources": config.resources.model_copy(update={"storage_path": local(config.resources.storage_path)}),
        "tracking": config.tracking.model_copy(update={"uri": absolute_uri(config.tracking.uri)}),
    })


def flatten(config: ExperimentConfig) -> dict[str, Any]:
    """Dotted key -> value, the form MLflow params take."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = node

    walk("", config.model_dump())
    return out


def to_yaml(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.model_dump(), sort_keys=False)
