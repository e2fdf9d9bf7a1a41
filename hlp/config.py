"""Typed experiment configuration, loaded from YAML with `--set` overrides.

One frozen pydantic tree per experiment: unknown keys are refused (with the closest valid
key suggested) and wrong types are reported with their dotted path, before any work starts.
Components are built from the fields of this tree by plain constructors; the tree itself is
never handed to models or losses.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hlp.models.settings import (
    DEFAULT_GLOBAL_INIT,
    AttentionConfig,
    Block,
    GlobalInit,
    LossSettings,
    Positional,
)

Settings = TypeVar("Settings")


class ConfigError(ValueError):
    """A config problem, phrased for the person who wrote the YAML."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_WRITTEN = "written"  # the validation context of a config a person wrote (load_config; see _Settings)


# The user-info of a URI (`user:password@`, `token@`) inside any text, to hide it when the text is shown.
_USER_INFO = re.compile(r"(://)[^/@\s]*@")


def _has_user_info(value: object) -> bool:
    """Any user-info, not only a password: a token goes in the user slot (`http://TOKEN@host`)."""
    if not isinstance(value, str):
        return False
    try:
        return "@" in urlsplit(value).netloc
    except ValueError:  # a malformed URI (an unclosed IPv6 bracket): judge the text itself
        return bool(_USER_INFO.search(value))


def _hide_user_info(text: str) -> str:
    return _USER_INFO.sub(r"\1<user-info hidden>@", text)


def _no_password(uri: str | None) -> str | None:
    """Refuse credentials inside a URI: the config is logged as MLflow params, written as YAML
    artifacts and shipped to Ray workers, so a secret there would leak everywhere."""
    if _has_user_info(uri):
        raise ValueError("must not embed a password or token (user-info, user:password@host or token@host); "
                         "put credentials in the environment instead (MLFLOW_TRACKING_USERNAME / "
                         "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN, AWS_ACCESS_KEY_ID / "
                         "AWS_SECRET_ACCESS_KEY)")
    return uri


# Names MLflow 3 opens a tracking store for (mlflow.tracking._tracking_service.utils registers
# them; tests/test_bad_input.py compares), read here without importing MLflow. SQLAlchemy's take a
# driver (`postgresql+psycopg2://`); `uc` and `databricks-uc` are registries, which MLflow refuses
# as tracking stores. A plugin's schemes (entry points `mlflow.tracking_store`) are added.
_TRACKING_SCHEMES = ("http", "https", "databricks", "sqlite", "postgresql", "mysql", "mssql")


def _mlflow_opens(uri: str) -> str:
    """Refuse a tracking URI that MLflow cannot open, while the config is read: MLflow itself says
    so only when the run starts, in a long traceback that names no key."""
    scheme = uri if uri in ("databricks", "databricks-uc", "uc") else urlsplit(uri).scheme.lower().partition("+")[0]
    if scheme in _TRACKING_SCHEMES or scheme in _plugin_schemes():
        return uri
    if scheme in ("databricks-uc", "uc"):
        raise ValueError(f"{uri!r} is a Unity Catalog model registry, not a tracking store; use databricks")
    if scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1"):
            return uri
        raise ValueError(f"{uri!r} is MLflow's file store, which MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE=true; "
                         "use sqlite:///PATH.db (the default: sqlite:///mlflow.db) or a server")
    raise ValueError(f"MLflow has no tracking store for {scheme}:// (got {uri!r}); use sqlite:///PATH.db, "
                     "http(s)://HOST:PORT of an MLflow server, databricks, or a database "
                     "(postgresql://, mysql://, mssql://)")


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="mlflow.tracking_store")}


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


_ARCH, _LOSS = AttentionConfig(), LossSettings()  # the defaults hlp.models declares, with the reasons


def settings_of(section: BaseModel, settings: type[Settings]) -> Settings:
    """A component's settings from its config section, field by field by name (never the tree)."""
    return settings(**{f.name: getattr(section, f.name) for f in dataclasses.fields(settings)})


class _Settings(_Section):
    """A section that carries a component's settings: their defaults and each setting's check are
    the component's own (`hlp.models.settings`), so the config and the model never disagree. Its
    constraints between settings (heads dividing d_k) are checked on a config a person wrote (the
    file and `--set`s, `load_config`), so a bad shape fails at once naming its keys; a config a job
    derives (a reproduction row, a sweep trial's sample) meets them when its model is built: that
    one run fails, not the whole job it belongs to."""
    component: ClassVar[type]

    @model_validator(mode="after")
    def _component_accepts(self, info: ValidationInfo) -> "_Settings":
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self.component)}
        self.component.check_each(values)
        if (info.context or {}).get(_WRITTEN):
            self.component(**values)  # the component's own checks between settings
        return self


class ModelConfig(_Settings):
    """The network: `AttentionConfig`'s fields by name, plus which variant and its heads' weights.
    experiments/paper-literal.yaml keeps eq. 1-3 as printed; README: Recipe gives the evidence."""
    component: ClassVar[type] = AttentionConfig
    variant: Literal["v_only", "a_only", "av", "cr_av", "co_av", "mlp"] = "co_av"
    d_model: int = _ARCH.d_model
    heads: int = _ARCH.heads
    layers: int = _ARCH.layers
    d_k: int = _ARCH.d_k
    d_v: int = _ARCH.d_v
    ffn_dim: int = _ARCH.ffn_dim
    dropout: float = _ARCH.dropout
    input_dropout: float = _ARCH.input_dropout
    block: Block = _ARCH.block
    positional: Positional = _ARCH.positional  # TVSum with soft targets prefers sine (experiments/tvsum.yaml)
    global_init: GlobalInit = DEFAULT_GLOBAL_INIT
    score_weights: dict[Literal["fused", "visual", "audio"], float] = {
        "fused": 1.0,
        "visual": 1.0,
        "audio": 1.0,
    }


class LossConfig(_Settings):
    """Eq 11's weights and the terms' settings: `LossSettings`'s fields by name."""
    component: ClassVar[type] = LossSettings
    lambda_ce: float = _LOSS.lambda_ce
    lambda_hpcl: float = _LOSS.lambda_hpcl
    lambda_rank: float = _LOSS.lambda_rank
    temperature: float = _LOSS.temperature
    margin: float = _LOSS.margin
    region: int = _LOSS.region
    normalize: bool = _LOSS.normalize


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
    # bf16: the training forward and loss under autocast (weights, optimiser and scoring stay
    # fp32). fp32 by default: every measured number in the README was trained in fp32.
    precision: Literal["fp32", "bf16"] = "fp32"

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
    # Read only under use_gpu. 1: Ray Train's own (a GPU per worker); a fraction (0.125) lets
    # small models share a GPU, e.g. a sweep's trials side by side.
    gpus_per_worker: float = Field(1.0, gt=0)
    max_failures: int = Field(2, ge=0)  # a dead worker restarts from the last checkpoint
    # How long a run's workers may wait to be placed before the run fails (Ray Train's own
    # default retries 60 s waits for ever). Long enough for an autoscaler to boot a node and run
    # the setup commands of cluster.yaml (a pip install of the project: minutes); a Ray of the
    # job's own is refused at once when it can never hold the workers (hlp/placement.py).
    start_timeout_s: float = Field(600.0, gt=0)
    storage_path: str = "ray_results"  # checkpoints: a local directory or s3://bucket/prefix
    address: str | None = None  # an existing Ray cluster; default: RAY_ADDRESS, else a local one

    _paths_have_no_secret = field_validator("storage_path", "address")(_no_password)

    @field_validator("gpus_per_worker")
    @classmethod
    def _gpus_ray_accepts(cls, gpus: float, info: ValidationInfo) -> float:
        # Runs only on a value given (not on the default), and names this key, so a bad `--set` is blamed.
        if gpus > 1 and gpus != int(gpus):
            raise ValueError("resources.gpus_per_worker must be a fraction below 1 (0.125, 0.5) or a whole "
                             "number: Ray accepts no other amount")
        # The default passes: a dumped config (what Ray workers, trials and reproduction rows load
        # again) carries it explicitly.
        if not info.data.get("use_gpu", True) and gpus != 1.0:
            raise ValueError("resources.gpus_per_worker is only read when resources.use_gpu is true: "
                             "set resources.use_gpu: true as well, or drop resources.gpus_per_worker")
        return gpus


with warnings.catch_warnings():  # `register` is the key; pydantic warns that ABCMeta has a method of that name
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class TrackingConfig(_Section):
        uri: str = "sqlite:///mlflow.db"
        experiment: str = "hlp"
        enabled: bool = True
        # A registered model's name: each run's model of each domain becomes one version of it
        # (MLflow's Model Registry), which `hlp predict --model models:/NAME/VERSION` loads.
        register: str | None = None

        _uri_has_no_secret = field_validator("uri")(_no_password)
        _uri_mlflow_opens = field_validator("uri")(_mlflow_opens)


class SearchParam(_Section):
    """One dimension of the search space; `int` bounds are inclusive. Its own checks are here, so
    every command refuses a bad one where it was written (the file or the `--set`); what a sweep
    needs of the whole space (known keys, ASHA's grace period) is `hlp.sweep.space.check_space`."""

    hints: ClassVar[dict[str, str]] = {"choices": "values", "options": "values", "min": "low", "max": "high",
                                       "lower": "low", "upper": "high", "distribution": "type"}
    type: Literal["float", "logfloat", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "SearchParam":
        if self.type == "categorical":
            if not self.values:
                raise ValueError("categorical needs a non-empty 'values' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both low and high, got low {self.low} and high {self.high}")
        if not self.low < self.high:
            raise ValueError(f"needs low < high, got low {self.low} and high {self.high}")
        if self.type == "logfloat" and self.low <= 0:
            raise ValueError(f"logfloat needs low > 0, got {self.low}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"int bounds must be integers, got {self.low}, {self.high}")
        return self


class SearchConfig(_Section):
    space: dict[str, SearchParam] = {}
    # A trial's objective is the mean validation mAP over these seeds (and over the folds under
    # eval.selection kfold), trained side by side: one seed's 4-11 validation videos per domain
    # are noisier than the differences between loss weights (README: Sweeps). [0]: one seed.
    seeds: list[int] = [0, 1]
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(1, ge=1)  # a ceiling: the sweep runs fewer when the cluster places fewer
    seed: int = 0  # the TPE sampler's seed
    grace_period: int = Field(2, ge=1)  # ASHA: epochs before a trial can be stopped
    reduction_factor: int = Field(3, ge=2)
    bootstrap: int = Field(2000, ge=100)  # resamples of test videos for the verdict's interval (as hlp reproduce)

    @field_validator("seeds")
    @classmethod
    def _some_seed(cls, seeds: list[int]) -> list[int]:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError("search.seeds needs at least one seed, each once")
        return seeds


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
        raise ConfigError(f"--set expects KEY=VALUE, got {_hide_user_info(item)!r}")
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


def set_dotted(raw: dict[str, Any], values: dict[str, Any], source: str = "") -> dict[str, Any]:
    """A copy of the config dict `raw` with each dotted key of `values` written in: the one writer
    behind `--set`, a sweep trial's sample and a reproduction row's changes."""
    out = copy.deepcopy(raw)
    for key, value in values.items():
        *path, leaf = key.split(".")
        node = out
        for part in path:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source or key}: {part!r} is not a section")
            node = child
        node[leaf] = value
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items, in order (a later one wins)."""
    for item in overrides:
        path, value = parse_override(item)
        raw = set_dotted(raw, {".".join(path): value}, f"--set {_hide_user_info(item)}")
    return raw


def _set_origins(overrides: list[str]) -> dict[str, str]:
    """Dotted key -> the `--set` that wrote it (a later one wins), so that a bad value given on
    the command line is blamed on that `--set`, not on a file it never came from."""
    return {item.partition("=")[0].strip(): f"--set {_hide_user_info(item)}" for item in overrides}


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                schema: type[Schema] = ExperimentConfig) -> Schema:  # type: ignore[assignment]
    """Read YAML, apply `--set` overrides, validate; errors name the file and the dotted key."""
    raw: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        raw = _read_yaml(Path(path))
    overrides = list(overrides or [])
    raw = apply_overrides(raw, overrides)
    return config_from_dict(raw, source, schema, _set_origins(overrides), {_WRITTEN: True})


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a config file: give the YAML file itself")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8): a config is YAML text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def config_from_dict(raw: dict[str, Any], source: str = "<dict>",
                     schema: type[Schema] = ExperimentConfig,  # type: ignore[assignment]
                     origins: dict[str, str] | None = None, context: dict[str, Any] | None = None) -> Schema:
    """`origins` (dotted key -> where its value came from) overrides `source` for those keys."""
    try:
        return schema.model_validate(raw, context=context)
    except ValidationError as exc:
        raise ConfigError(_explain(exc.errors(), source, schema, origins or {})) from None


def _explain(errors: list[dict[str, Any]], source: str, schema: type[BaseModel], origins: dict[str, str]) -> str:
    """Each error under where its value came from: the file, or the `--set` that wrote it."""
    by_origin: dict[str, list[str]] = {}
    for error in errors:
        keys, text = _describe(error, schema)
        by_origin.setdefault(_origin(keys, source, origins), []).append(text)
    return "; ".join(f"{origin}: " + "; ".join(texts) for origin, texts in by_origin.items())


def _origin(keys: list[str], source: str, origins: dict[str, str]) -> str:
    """The `--set`s that wrote any of `keys` (`--set train={...}` wrote train.*), else the source."""
    found = []
    for key in keys:
        written = [k for k in origins if key == k or key.startswith(k + ".")]
        if written:
            found.append(origins[max(written, key=len)])
    return ", ".join(dict.fromkeys(found)) or source


def _describe(error: dict[str, Any], schema: type[BaseModel]) -> tuple[list[str], str]:
    """(the dotted keys at fault, the text): a check of a whole section names its own keys."""
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        hint = _closest_key(loc, schema)
        return [key], f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
    if error["type"] == "value_error":
        text = error["msg"].removeprefix("Value error, ")
        section = _section(loc, schema)
        fields = set(getattr(section, "model_fields", ()))
        name, _, rest = text.partition(" ")
        if name in fields:  # a component's own check, which names its field
            return [f"{key}.{name}"], f"{key}.{name}: {rest}"
        named = [n for n in re.findall(r"\b(\w+)=", text) if n in fields]
        if named and issubclass(section, _Settings):  # between settings: "d_k=30 ... heads=4"
            return [f"{key}.{n}" for n in named], re.sub(
                r"\b(\w+)=", lambda m: f"{key}.{m[1]}=" if m[1] in fields else m[0], text)
        return [key], text if text.startswith(key) else f"{key}: {text}"
    shown = error.get("input")
    if _has_user_info(shown):
        shown = "<a URI with user-info, not shown>"
    return [key], f"{key}: {error['msg']} (got {shown!r})"


def _section(loc: list[str], schema: type[BaseModel]) -> type[BaseModel] | None:
    """The section (model class) at `loc`, through mappings of sections (`search.space.<key>`)."""
    section: type[BaseModel] = schema
    parts = iter(loc)
    for part in parts:
        field = section.model_fields.get(part)
        kind = field.annotation if field is not None else None
        if get_origin(kind) is dict:
            kind = get_args(kind)[1] if next(parts, None) is not None else None
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            return None
        section = kind
    return section


def _closest_key(loc: list[str], schema: type[BaseModel]) -> str | None:
    section = _section(loc[:-1], schema)
    if section is None:
        return None
    hinted = getattr(section, "hints", {}).get(loc[-1])  # a name other tools use (`choices` for `values`)
    match = [hinted] if hinted else difflib.get_close_matches(loc[-1], list(section.model_fields), n=1, cutoff=0.5)
    return ".".join([*loc[:-1], match[0]]) if match else None


def with_absolute_paths(config: ExperimentConfig) -> ExperimentConfig:
    """Pin relative paths to this process's directory before Ray workers (other cwd) see them."""
    # Deferred: `hlp` checks a config before fsspec and MLflow load (a typo is reported at once).
    from hlp.storage import resolve_root
    from hlp.tracking import absolute_uri

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
