"""The standard-transformer options, the training recipe and honest selection (issue 11)."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from hlp.config import ConfigError, load_config
from hlp.data.batching import collate, soft_targets
from hlp.data.datasets import load_dataset
from hlp.data.protocols import domain_split, kfold_splits
from hlp.data.synth import SynthSpec, write_synthetic_tvsum
from hlp.evaluate.evaluation import domain_map
from hlp.models.settings import LITERAL, AttentionConfig
from hlp.models.variants import build_model
from hlp.train.loop import FitResult, build_network, choose_from_folds, fit, lr_factor
from hlp.train.run import ensemble_map

DV, DA = 10, 6
STANDARD = AttentionConfig(d_model=16, heads=2, layers=2, d_k=8, d_v=12, ffn_dim=32, dropout=0.1,
                           block="standard", positional="sine", input_dropout=0.5)
TINY = ["model.d_model=16", "model.heads=2", "model.d_k=16", "model.d_v=16", "model.ffn_dim=32",
        "model.dropout=0.1", "train.seeds=[0]", "train.epochs=3", "train.lr=1e-3", "tracking.enabled=false"]
RECIPE = ["model.block=standard", "model.positional=sine", "model.input_dropout=0.5", "data.normalize=l2",
          "train.optimizer=adamw", "train.weight_decay=1e-4", "train.schedule=cosine", "train.warmup_epochs=1",
          "train.grad_clip=1.0"]


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(synth_root):
    return load_dataset("youtube", str(synth_root))


def _inputs(t: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, t, DV), torch.randn(2, t, DA)


# ---------------------------------------------------------------- model options


@pytest.mark.parametrize("positional", ["none", "sine", "learned"])
@pytest.mark.parametrize("variant", ["co_av", "cr_av", "av", "mlp"])
def test_standard_blocks_keep_padding_exact(variant: str, positional: str) -> None:
    """Padding never changes a valid clip's output, whatever the block, positions and variant."""
    arch = dataclasses.replace(STANDARD, positional=positional)
    model = build_model(variant, DV, DA, arch, normalize="l2").eval()
    visual, audio = _inputs()
    mask = torch.arange(12)[None, :] < torch.tensor([7, 12])[:, None]
    batch = model(visual, audio, mask)
    alone = model(visual[:1, :7], audio[:1, :7])
    torch.testing.assert_close(batch.score[0, :7], alone.score[0], atol=1e-5, rtol=0)


def test_positions_make_the_encoder_see_order_and_none_keeps_it_blind() -> None:
    """Without positions, permuting the clips permutes the scores (a bag of clips); with them it does not."""
    visual, audio = _inputs()
    perm = torch.randperm(12)
    for positional, blind in (("none", True), ("sine", False), ("learned", False)):
        torch.manual_seed(0)
        arch = dataclasses.replace(STANDARD, positional=positional, input_dropout=0.0)
        model = build_model("co_av", DV, DA, arch, global_init="none").eval()
        if positional == "learned":
            with torch.no_grad():
                model.streams["visual"].positions.table.normal_()
        straight, permuted = model(visual, audio).score, model(visual[:, perm], audio[:, perm]).score
        assert torch.allclose(straight[:, perm], permuted, atol=1e-5) == blind, positional


def test_the_mlp_scores_each_clip_alone() -> None:
    model = build_model("mlp", DV, DA, STANDARD).eval()
    visual, audio = _inputs()
    changed = visual.clone()
    changed[:, 5:] = torch.randn_like(changed[:, 5:])
    torch.testing.assert_close(model(visual, audio).score[:, :5], model(changed, audio).score[:, :5])
    assert model(visual, audio).embedding.shape == (2, 12, 16)


def test_paper_block_has_no_output_projection_and_standard_has_one() -> None:
    paper = build_model("co_av", DV, DA, dataclasses.replace(STANDARD, block="paper", positional="none"))
    standard = build_model("co_av", DV, DA, STANDARD)
    assert not any(".attn.out." in k for k in paper.state_dict())
    assert any(".attn.out." in k for k in standard.state_dict())
    literal = build_model("co_av", DV, DA, AttentionConfig(d_model=16, heads=2, d_k=8, d_v=12, ffn_dim=32, **LITERAL))
    assert literal.inputs is None  # the literal reading keeps its state_dict keys (old model files load)


def test_standardize_uses_training_statistics_and_the_model_file_carries_them(dataset, tmp_path) -> None:
    from hlp.train import model_file

    cfg = load_config(None, [*TINY, *RECIPE, "data.normalize=standardize", "train.epochs=1"])
    split = domain_split(dataset, "umt", "synth_a", 0.25, seed=0)
    result = fit({"synth_a": split}, cfg, seed=0)["synth_a"]
    train_visual = np.concatenate([v.visual for v in split.train])
    np.testing.assert_allclose(result.state_dict["inputs.visual.mean"].numpy(), train_visual.mean(0), atol=1e-4)
    everything = np.concatenate([v.visual for v in [*split.train, *split.val, *split.test]])
    assert not np.allclose(result.state_dict["inputs.visual.mean"].numpy(), everything.mean(0), atol=1e-4)
    path = str(tmp_path / "model.pt")
    model_file.save(path, model_file.payload(result, cfg.model, 20, 10, None, cfg.data.normalize))
    loaded = model_file.load(path).model
    video = split.test[0]
    batch = collate([(video, np.arange(video.num_clips))])
    direct = build_network(cfg.model, result.visual_dim, result.audio_dim, "standardize")
    direct.load_state_dict(result.state_dict)
    torch.testing.assert_close(loaded(batch.visual, batch.audio).score, direct.eval()(batch.visual, batch.audio).score)


def test_l2_normalises_every_clip() -> None:
    model = build_model("mlp", DV, DA, STANDARD, normalize="l2")
    visual, audio = model.inputs.visual(torch.randn(3, DV) * 7), model.inputs.audio(torch.randn(3, DA))
    torch.testing.assert_close(visual.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(audio.norm(dim=-1), torch.ones(3))


# ---------------------------------------------------------------- recipe


def test_schedule_warms_up_linearly_then_decays_to_zero() -> None:
    assert [lr_factor(s, 4, 20, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(12, 4, 20, "cosine") == pytest.approx(0.5)
    assert lr_factor(20, 4, 20, "cosine") == pytest.approx(0.0)
    assert lr_factor(19, 0, 20, "constant") == 1.0


def test_soft_targets_are_umts_and_contrast_keeps_binary_labels(tmp_path) -> None:
    write_synthetic_tvsum(str(tmp_path), SynthSpec(domains=("SA",), videos_per_domain=2, min_clips=12, max_clips=14,
                                                   rgb_dim=4, audio_dim=4))
    tvsum = load_dataset("tvsum", str(tmp_path))
    video = next(iter(tvsum.videos.values()))
    expected = (video.annotator_scores.sum(1) - 20) / 80
    np.testing.assert_allclose(soft_targets(video), expected, rtol=1e-6)
    batch = collate([(video, np.arange(video.num_clips))], soft=True)
    np.testing.assert_allclose(batch.targets[0].numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(batch.labels[0].numpy(), video.labels)
    with pytest.raises(ConfigError, match="soft needs TVSum"):
        load_config(None, ["data.targets=soft"])


def test_recipe_keys_are_typed_and_refused_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match="model.positional"):
        load_config(None, ["model.positional=rotary"])
    with pytest.raises(ConfigError, match="did you mean 'train.grad_clip'"):
        load_config(None, ["train.grad_clp=1"])
    with pytest.raises(ConfigError, match="eval.folds"):
        load_config(None, ["eval.folds=1"])


@pytest.mark.slow
def test_the_recipe_learns_and_ema_scores_with_the_average(dataset) -> None:
    cfg = load_config(None, [*TINY, *RECIPE, "train.epochs=6", "train.ema=0.9", "train.windows_per_clip=2"])
    split = domain_split(dataset, "umt", "synth_a", 0.25, seed=0)
    records = []
    result = fit({"synth_a": split}, cfg, seed=0, on_epoch=lambda r, s: records.append(r))["synth_a"]
    assert result.val_map > records[0].best_val("synth_a")[0] + 0.05
    assert "n_averaged" not in " ".join(result.state_dict)  # the saved model is the plain network, averaged


# ---------------------------------------------------------------- selection


def test_kfold_splits_validate_every_training_video_once_and_never_test(dataset) -> None:
    split = domain_split(dataset, "umt", "synth_a", 0.25, seed=0)
    folds = kfold_splits(split, 3, seed=0)
    training = {v.video_id for v in [*split.train, *split.val]}
    held = [v.video_id for f in folds for v in f.val]
    assert sorted(held) == sorted(training)  # each once
    for f in folds:
        assert {v.video_id for v in f.train} == training - {v.video_id for v in f.val}
        assert f.test == split.test
    assert len(kfold_splits(split, 100, seed=0)) == len(training)  # at most leave-one-out


def test_the_epoch_is_chosen_on_the_mean_fold_curve() -> None:
    curves = {"fold0": {"d": [{"full": 0.9, "sliding": 0.1}, {"full": 0.5, "sliding": 0.6}, {"full": 0.7, "sliding": 0.2}]},
              "fold1": {"d": [{"full": 0.9, "sliding": 0.1}, {"full": 0.5, "sliding": 0.4}, {"full": 0.8, "sliding": 0.3}]}}
    chosen = choose_from_folds(curves, ["full", "sliding"], epochs=2)["d"]
    assert (chosen.epoch, chosen.scoring, chosen.val_map) == (2, "full", pytest.approx(0.75))  # epoch 0 never


@pytest.mark.slow
def test_kfold_trains_the_final_model_on_all_training_videos_and_resumes_mid_fold(dataset) -> None:
    cfg = load_config(None, [*TINY, "eval.selection=kfold", "eval.folds=2", "model.dropout=0.0"])
    splits = {"synth_a": domain_split(dataset, "umt", "synth_a", 0.25, seed=0)}
    records, states = [], {}

    def keep(record, state):
        records.append((record.phase, record.epoch))
        if (record.phase, record.epoch) == ("fold1", 1):
            buffer = io.BytesIO()
            torch.save(state(), buffer)
            states["mid"] = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)

    full = fit(splits, cfg, seed=0, on_epoch=keep)["synth_a"]
    assert [p for p, _ in records].count("fold0") == 4 and records[4:6] == [("fold1", 0), ("fold1", 1)]
    finals = [e for p, e in records if p == "final"]
    assert finals == list(range(full.best_epoch + 1))  # the final model stops at the chosen epoch
    assert full.val_scores == {}  # every training video trained the final model
    resumed_records = []
    resumed = fit(splits, cfg, seed=0, resume=states["mid"], on_epoch=lambda r, s: resumed_records.append((r.phase, r.epoch)))["synth_a"]
    assert resumed_records[0] == ("fold1", 2)  # nothing redone
    assert (resumed.best_epoch, resumed.scoring, resumed.val_map) == (full.best_epoch, full.scoring, full.val_map)
    for key, value in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value)


def test_the_seed_ensemble_scores_the_mean_of_the_seeds(dataset) -> None:
    split = domain_split(dataset, "umt", "synth_a", 0.25, seed=0)
    rng = np.random.default_rng(0)
    scores = [{v.video_id: rng.random(v.num_clips).astype(np.float32) for v in split.test} for _ in range(2)]
    results = [FitResult("synth_a", s, 1, "full", 0.5, math.nan, sc) for s, sc in enumerate(scores)]
    mean = {vid: (scores[0][vid] + scores[1][vid]) / 2 for vid in scores[0]}
    assert ensemble_map(results, dataset) == pytest.approx(domain_map(split.test, mean))


def test_a_model_file_from_before_the_standard_block_still_loads(tmp_path) -> None:
    """Model files written at a7db40e have no block / positional / input_dropout settings: they
    are the literal reading, whatever the defaults are now."""
    from hlp.config import ModelConfig
    from hlp.train import model_file

    old = ModelConfig(d_model=16, heads=2, d_k=16, d_v=16, ffn_dim=32, block="paper", positional="none",
                      input_dropout=0.0)
    network = build_network(old, DV, DA)
    settings = old.model_dump(exclude={"block", "positional", "input_dropout"})
    path = str(tmp_path / "old.pt")
    model_file.save(path, {"format": model_file.FORMAT, "domain": "d", "seed": 0, "best_epoch": 1,
                            "scoring": "full", "val_map": 0.5, "window": 20, "stride": 10, "model": settings,
                            "visual_dim": DV, "audio_dim": DA, "features": None,
                            "state_dict": network.state_dict()})
    loaded = model_file.load(path).model
    visual, audio = _inputs()
    torch.testing.assert_close(loaded(visual, audio).score, network.eval()(visual, audio).score)


def test_early_stopping_never_cuts_a_fold_curve_short(dataset) -> None:
    """train.patience stops only the phase that selects on its own validation; each fold's curve
    covers every epoch, or the mean over folds would be taken over curves of other lengths."""
    cfg = load_config(None, [*TINY, "eval.selection=kfold", "eval.folds=2", "train.patience=1"])
    records = []
    fit({"synth_a": domain_split(dataset, "umt", "synth_a", 0.25, seed=0)}, cfg, seed=0,
        on_epoch=lambda r, s: records.append((r.phase, r.epoch)))
    assert [e for p, e in records if p == "fold0"] == [0, 1, 2, 3]
    assert [e for p, e in records if p == "fold1"] == [0, 1, 2, 3]


@pytest.mark.parametrize("ema", [None, 0.9])
def test_a_checkpoint_holds_each_tensor_once_and_resumes_the_same(dataset, ema) -> None:
    """At an epoch that is the best so far, the best weights are the model's (or the average's)
    as they stand: the checkpoint names them instead of storing them twice (issue 22), and a run
    resumed from it ends exactly where the uninterrupted run ends."""
    cfg = load_config(None, [*TINY, "train.epochs=3", "model.dropout=0.0", f"train.ema={ema or 'null'}"])
    splits = {"synth_a": domain_split(dataset, "umt", "synth_a", 0.25, seed=0)}
    saved = {}

    def keep(record, state):
        buffer = io.BytesIO()
        torch.save(state(), buffer)
        saved[record.epoch] = buffer.getvalue()

    full = fit(splits, cfg, seed=0, on_epoch=keep)["synth_a"]
    network = sum(t.numel() * t.element_size() for t in full.state_dict.values())
    at_best = torch.load(io.BytesIO(saved[full.best_epoch]), weights_only=True)["domains"]["synth_a"]
    assert at_best["best"]["state"] is None and at_best["best"]["state_of"] == ("ema" if ema else "model")
    copies = 3 + (1 if ema else 0)  # the model, AdamW's two moments, the average
    assert _tensor_bytes(at_best) < (copies + 0.5) * network  # no second copy of the best weights
    later = [e for e in saved if e > full.best_epoch]
    if later:  # an epoch past the best holds the best weights apart: they differ from the model's
        assert torch.load(io.BytesIO(saved[later[0]]), weights_only=True)["domains"]["synth_a"]["best"]["state"]
    resumed = fit(splits, cfg, seed=0, resume=torch.load(io.BytesIO(saved[full.best_epoch]), weights_only=True))["synth_a"]
    assert (resumed.best_epoch, resumed.scoring, resumed.val_map) == (full.best_epoch, full.scoring, full.val_map)
    for key, value in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value)


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0
