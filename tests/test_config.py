"""Config loading: overrides, unknown keys with suggestions, wrong types, malformed YAML."""

from __future__ import annotations

import pytest

from hlp.config import ConfigError, flatten, load_config, parse_override


def write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_papers_losses_and_sizes_under_the_recipe(tmp_path):
    cfg = load_config(write(tmp_path, "name: x\n"))
    assert (cfg.loss.lambda_ce, cfg.loss.lambda_hpcl, cfg.loss.lambda_rank) == (1.0, 0.3, 0.1)
    assert (cfg.loss.margin, cfg.loss.region) == (0.7, 3)
    assert (cfg.model.d_model, cfg.model.heads, cfg.model.layers, cfg.model.d_k, cfg.model.d_v) == (256, 8, 2, 512, 512)
    assert (cfg.model.block, cfg.model.positional, cfg.data.normalize) == ("standard", "none", "l2")
    assert (cfg.train.window, cfg.train.epochs, cfg.train.lr, cfg.train.optimizer) == (20, 8, 3e-4, "adamw")


def test_paper_literal_yaml_is_the_literal_reading():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "paper-literal.yaml")
    assert (cfg.model.block, cfg.model.positional, cfg.model.dropout, cfg.model.input_dropout) == ("paper", "none", 0.5, 0.0)
    assert (cfg.data.normalize, cfg.train.optimizer, cfg.train.schedule, cfg.train.grad_clip) == ("none", "adam", "constant", None)
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.weight_decay, cfg.eval.selection) == (20, 1e-4, 0.0, "carve")


def test_set_parses_yaml_values(tmp_path):
    cfg = load_config(
        write(tmp_path, "data:\n  dataset: youtube\n"),
        ["data.domains=[dog,parkour]", "loss.temperature=5e-2", "train.seeds=[3]", "model.variant=cr_av"],
    )
    assert cfg.data.domains == ["dog", "parkour"]
    assert cfg.loss.temperature == pytest.approx(0.05)
    assert cfg.train.seeds == [3]
    assert cfg.model.variant == "cr_av"


def test_unknown_key_suggests_closest(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "loss:\n  lamda_hpcl: 0.5\n"))
    assert "loss.lamda_hpcl" in str(info.value)
    assert "loss.lambda_hpcl" in str(info.value)
    assert "exp.yaml" in str(info.value)


def test_unknown_key_through_set_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="train.epoch'.*train.epochs"):
        load_config(write(tmp_path, ""), ["train.epoch=3"])


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(write(tmp_path, "train:\n  epochs: many\n"))


def test_bad_choice_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="model.variant"):
        load_config(write(tmp_path, "model:\n  variant: transformer\n"))


def test_malformed_yaml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="exp.yaml: malformed YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_override_needs_equals():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.epochs")


def test_flatten_has_dotted_keys(tmp_path):
    flat = flatten(load_config(write(tmp_path, "")))
    assert flat["loss.lambda_hpcl"] == 0.3
    assert flat["model.score_weights.fused"] == 1.0


def test_shipped_experiments_validate():
    from pathlib import Path

    from hlp.extract.config import ExtractionConfig
    from hlp.reproduce.config import ReproduceConfig

    root = Path(__file__).resolve().parents[1] / "experiments"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert {"quickstart.yaml", "tvsum.yaml", "youtube.yaml"} <= set(names)
    for path in root.glob("*.yaml"):
        if path.name == "extract.yaml":  # an extraction file, not an experiment
            assert load_config(path, schema=ExtractionConfig).visual.name == "r3d_18"
        elif path.name == "reproduce.yaml":  # the paper's defaults under `experiment:`
            assert load_config(path, schema=ReproduceConfig).experiment.loss.lambda_hpcl == 0.3
        else:
            assert load_config(path).name


def test_model_and_loss_defaults_and_checks_are_the_components_own():
    """Declared once, in hlp.models.settings: the config's sections carry the same fields with the
    same defaults, and refuse exactly what the components refuse, naming the dotted key."""
    import dataclasses

    from hlp.config import ExperimentConfig
    from hlp.models.settings import AttentionConfig, LossSettings

    cfg = ExperimentConfig()
    for section, settings in ((cfg.model, AttentionConfig()), (cfg.loss, LossSettings())):
        for f in dataclasses.fields(settings):
            assert getattr(section, f.name) == getattr(settings, f.name), f.name
    for key, bad in (("loss.margin", -0.1), ("loss.region", 0), ("loss.temperature", 0.0), ("loss.lambda_rank", -1.0),
                     ("model.d_model", 0), ("model.dropout", 1.0), ("model.input_dropout", -0.1)):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(None, [f"{key}={bad}"])
        component = LossSettings if key.startswith("loss") else AttentionConfig
        with pytest.raises(ValueError, match=key.split(".")[1]):
            component(**{key.split(".")[1]: bad})


def test_a_bad_set_value_is_blamed_on_the_set_not_the_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "train:\n  lr: fast\n"), ["train.epochs=abc"])
    message = str(info.value)
    assert "--set train.epochs=abc: train.epochs:" in message and "'abc'" in message, message
    assert "exp.yaml: train.lr:" in message, message  # the file's own mistake is still the file's
    assert "exp.yaml: train.epochs" not in message
    with pytest.raises(ConfigError, match=r"^--set train=\{epochs: x\}: train\.epochs:"):  # a section written whole
        load_config(write(tmp_path, ""), ["train={epochs: x}"])


@pytest.mark.parametrize("key", ["tracking.uri", "data.root", "resources.storage_path"])
@pytest.mark.parametrize("uri", ["http://tok3n-xyz@127.0.0.1:5000", "https://alice:tok3n-xyz@mlflow.example",
                                 "s3://tok3n-xyz@bucket/prefix"])
def test_any_user_info_in_a_uri_is_refused_and_never_shown(key, uri):
    """A token goes in the user slot (`http://TOKEN@host`) as often as in the password's."""
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"{key}={uri}"])
    message = str(info.value)
    assert f"{key}: " in message and "must not embed a password or token" in message, message
    assert "MLFLOW_TRACKING_TOKEN" in message and "tok3n-xyz" not in message, message


def test_gpus_per_worker_takes_what_ray_accepts_and_only_with_use_gpu(tmp_path):
    """A fraction below 1 or a whole number (Ray refuses 1.5); read only under resources.use_gpu,
    so setting it without names both keys. The default itself always loads: a dumped config
    (what Ray workers and sweep trials load again) carries it explicitly."""
    from hlp.config import ExperimentConfig, config_from_dict

    assert load_config(None).resources.gpus_per_worker == 1.0  # Ray Train's own: a GPU per worker
    for gpus in (0.125, 0.5, 1, 2):
        assert load_config(None, ["resources.use_gpu=true", f"resources.gpus_per_worker={gpus}"]
                           ).resources.gpus_per_worker == gpus
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "resources:\n  use_gpu: true\n"), ["resources.gpus_per_worker=1.5"])
    assert "--set resources.gpus_per_worker=1.5: resources.gpus_per_worker" in str(info.value)
    assert "a fraction below 1 (0.125, 0.5) or a whole number" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "resources:\n  gpus_per_worker: 0.125\n"))
    assert "exp.yaml: resources.gpus_per_worker" in str(info.value)
    assert "only read when resources.use_gpu is true" in str(info.value)
    assert config_from_dict(ExperimentConfig().model_dump()).resources.gpus_per_worker == 1.0


def test_precision_is_fp32_unless_bf16_is_asked():
    assert load_config(None).train.precision == "fp32"
    assert load_config(None, ["train.precision=bf16"]).train.precision == "bf16"
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, ["train.precision=fp16"])
