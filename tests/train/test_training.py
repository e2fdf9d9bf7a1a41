"""The training recipe and whole-video scoring on the small synthetic set."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from hlp.config import load_config
from hlp.data.datasets import load_dataset
from hlp.data.protocols import domain_split
from hlp.data.sampling import meets_ratio
from hlp.evaluate.scoring import score_video
from hlp.models.settings import LITERAL, AttentionConfig
from hlp.models.variants import build_model
from hlp.train.loop import epoch_windows, fit, shard

TINY = ["model.d_model=16", "model.heads=2", "model.d_k=16", "model.d_v=16", "model.ffn_dim=32",
        "model.dropout=0.1", "train.seeds=[0]", "train.epochs=3", "train.lr=1e-3", "tracking.enabled=false"]


@pytest.fixture(scope="module")
def dataset(synth_root):
    return load_dataset("youtube", str(synth_root))


def tiny_model():
    torch.manual_seed(0)
    return build_model("co_av", 16, 16, AttentionConfig(d_model=16, heads=2, d_k=16, d_v=16, ffn_dim=32, **LITERAL)).eval()


def long_video(dataset, clips: int):
    base = next(iter(dataset.videos.values()))
    reps = -(-clips // base.num_clips)
    tile = lambda a: np.concatenate([a] * reps)[:clips]  # noqa: E731
    return dataclasses.replace(base, visual=tile(base.visual), audio=tile(base.audio), labels=tile(base.labels),
                               match=tile(base.match))


def test_sliding_scores_cover_every_clip_as_window_means(dataset):
    model, video = tiny_model(), long_video(dataset, 47)
    scores = score_video(model, video, "sliding", window=20, stride=10)
    assert scores.shape == (47,) and np.isfinite(scores).all()
    # clip 0 is covered only by the first window, clip 46 only by the tail window [27, 47)
    with torch.no_grad():
        first = model(torch.tensor(video.visual[None, :20]), torch.tensor(video.audio[None, :20])).score[0]
        tail = model(torch.tensor(video.visual[None, 27:]), torch.tensor(video.audio[None, 27:])).score[0]
    assert scores[0] == pytest.approx(float(first[0]), abs=1e-6)
    assert scores[46] == pytest.approx(float(tail[-1]), abs=1e-6)
    # clip 25 is in windows [10, 30) and [20, 40)
    with torch.no_grad():
        w1 = model(torch.tensor(video.visual[None, 10:30]), torch.tensor(video.audio[None, 10:30])).score[0, 15]
        w2 = model(torch.tensor(video.visual[None, 20:40]), torch.tensor(video.audio[None, 20:40])).score[0, 5]
    assert scores[25] == pytest.approx(float(w1 + w2) / 2, abs=1e-6)


def test_full_scoring_is_one_pass_and_equals_sliding_on_short_videos(dataset):
    model = tiny_model()
    short = long_video(dataset, 15)
    np.testing.assert_allclose(score_video(model, short, "full", 20, 10), score_video(model, short, "sliding", 20, 10))
    video = long_video(dataset, 47)
    with torch.no_grad():
        whole = model(torch.tensor(video.visual[None]), torch.tensor(video.audio[None])).score[0].numpy()
    np.testing.assert_allclose(score_video(model, video, "full", 20, 10), whole, atol=1e-6)


def test_epoch_windows_keep_order_ratio_and_skip_single_class(dataset):
    videos = list(dataset.videos.values())[:6]
    single = dataclasses.replace(videos[0], video_id="flat", labels=np.zeros(videos[0].num_clips, bool))
    items = epoch_windows(videos + [single], 20, 0.5, np.random.default_rng(0))
    assert all(video.video_id != "flat" for video, _ in items)
    for video, idx in items:
        assert (np.diff(idx) > 0).all() and len(idx) == min(20, video.num_clips)
        if video.num_clips > 20:
            pos = int(video.labels[idx].sum())
            if video.labels.sum() >= 7 and (~video.labels).sum() >= 7:
                assert meets_ratio(pos, len(idx) - pos, 0.5)


@pytest.mark.slow
def test_selection_never_looks_at_the_test_split(dataset, tmp_path):
    cfg = load_config(None, TINY)
    split = domain_split(dataset, "umt", "synth_a", 0.25, seed=0)
    flipped = [dataclasses.replace(v, match=-v.match, labels=~v.labels) for v in split.test]
    records = []
    a = fit({"synth_a": split}, cfg, seed=0, on_epoch=lambda record, state: records.append(record))["synth_a"]
    b = fit({"synth_a": dataclasses.replace(split, test=flipped)}, cfg, seed=0)["synth_a"]
    assert (a.best_epoch, a.scoring, a.val_map) == (b.best_epoch, b.scoring, b.val_map)
    for key in a.state_dict:
        torch.testing.assert_close(a.state_dict[key], b.state_dict[key])
    assert a.test_map != b.test_map  # the test split is scored, once, with the chosen model
    assert len(records) == 4 and records[0].losses == {}  # epoch 0 scores the untrained model
    assert a.best_epoch >= 1


@pytest.mark.slow
def test_training_learns_the_cooccurrence(dataset):
    cfg = load_config(None, [*TINY, "train.epochs=8"])
    split = domain_split(dataset, "umt", "synth_a", 0.25, seed=0)
    records = []
    result = fit({"synth_a": split}, cfg, seed=0, on_epoch=lambda record, state: records.append(record))["synth_a"]
    untrained = records[0].best_val("synth_a")[0]
    assert result.val_map > untrained + 0.05
    losses = [r.losses["synth_a"]["loss_total"] for r in records[1:]]
    assert losses[-1] < losses[0]


def test_shards_are_equal_and_disjoint():
    items = list(range(11))
    parts = [shard(items, rank, 3) for rank in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert not set(parts[0]) & set(parts[1]) and sorted(sum(parts, [])) == list(range(9))
    assert shard(items, 0, 1) == items


@pytest.mark.slow
def test_resume_from_state_continues_exactly(dataset):
    """An interrupted run resumed from its epoch-2 state ends where an uninterrupted run ends."""
    cfg = load_config(None, [*TINY, "train.epochs=4", "model.dropout=0.0"])
    splits = {d: domain_split(dataset, "umt", d, 0.25, seed=0) for d in ("synth_a", "synth_b")}
    states, records = {}, []

    def keep(record, state):
        records.append(record.epoch)
        if record.epoch == 2:  # serialised at once, as the Ray worker does
            buffer = io.BytesIO()
            torch.save(state(), buffer)
            states["epoch2"] = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)

    full = fit(splits, cfg, seed=0, on_epoch=keep)
    resumed_epochs = []
    resumed = fit(splits, cfg, seed=0, resume=states["epoch2"],
                  on_epoch=lambda record, state: resumed_epochs.append(record.epoch))
    assert resumed_epochs == [3, 4]  # nothing redone
    for domain in splits:
        assert (resumed[domain].best_epoch, resumed[domain].val_map) == (full[domain].best_epoch, full[domain].val_map)
        for key, value in full[domain].state_dict.items():
            torch.testing.assert_close(resumed[domain].state_dict[key], value)


@pytest.mark.parametrize("precision, trained_in", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_bf16_trains_under_autocast_and_scores_in_fp32(dataset, precision, trained_in):
    """train.precision reaches the training forward (every Linear's output, seen by a global
    hook), while the weights stay float32 and validation scores them in float32: the metrics
    measure the same kind of weights whatever the precision."""
    cfg = load_config(None, [*TINY, "train.epochs=1", f"train.precision={precision}"])
    split = domain_split(dataset, "umt", "synth_a", 0.25, seed=0)
    seen: dict[bool, set] = {True: set(), False: set()}  # module.training -> output dtypes

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            seen[module.training].add(output.dtype)

    records = []
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        result = fit({"synth_a": split}, cfg, seed=0, on_epoch=lambda record, state: records.append(record))["synth_a"]
    finally:
        handle.remove()
    assert seen == {True: {trained_in}, False: {torch.float32}}  # training forward; validation and test scoring
    assert {v.dtype for v in result.state_dict.values() if v.is_floating_point()} == {torch.float32}
    assert all(np.isfinite(v) for v in records[1].losses["synth_a"].values())
    assert np.isfinite(result.val_map) and np.isfinite(result.test_map)
