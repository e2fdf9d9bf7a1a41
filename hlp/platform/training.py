"""The training recipe for one domain and one seed: an explicit loop, every step in view.

build components -> for each epoch: sample windows, train, score the validation split ->
keep the best epoch (and scoring mode) by validation mAP -> score the test split once.
The test split never influences any choice made here.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from hlp.models.attention import AttentionConfig
from hlp.models.losses import HighlightLoss
from hlp.models.variants import build_model
from hlp.platform.batching import collate
from hlp.platform.config import EvalConfig, ExperimentConfig
from hlp.platform.datasets import Video
from hlp.platform.evaluation import domain_map
from hlp.platform.protocols import DomainSplit
from hlp.platform.sampling import can_contrast, sample_window, windows_per_video
from hlp.platform.scoring import ScoringMode, score_videos


@dataclass
class EpochRecord:
    epoch: int
    losses: dict[str, float]
    val_map: dict[str, float]  # scoring mode -> validation mAP

    @property
    def best_val(self) -> tuple[float, str]:
        mode = max(self.val_map, key=lambda m: self.val_map[m])
        return self.val_map[mode], mode


@dataclass
class FitResult:
    domain: str
    seed: int
    best_epoch: int
    scoring: str
    val_map: float
    test_map: float
    test_scores: dict[str, np.ndarray]
    history: list[EpochRecord] = field(default_factory=list)
    state_dict: dict[str, torch.Tensor] | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_components(cfg: ExperimentConfig, visual_dim: int, audio_dim: int):
    """Model, loss and optimiser from plain typed constructors; input dims come from the data."""
    m, lo = cfg.model, cfg.loss
    arch = AttentionConfig(d_model=m.d_model, heads=m.heads, layers=m.layers, d_k=m.d_k, d_v=m.d_v,
                           ffn_dim=m.ffn_dim, dropout=m.dropout)
    model = build_model(m.variant, visual_dim, audio_dim, arch, global_init=m.global_init,
                        score_weights=dict(m.score_weights))
    loss_fn = HighlightLoss(
        lambda_ce=lo.lambda_ce, lambda_hpcl=lo.lambda_hpcl, lambda_rank=lo.lambda_rank,
        temperature=lo.temperature, margin=lo.margin, region=lo.region, normalize=lo.normalize,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    return model, loss_fn, optimizer


def epoch_windows(videos: list[Video], window: int, min_ratio: float, rng: np.random.Generator):
    """(video, clip indices) pairs for one epoch, shuffled.

    Videos with a single class are left out: section 4.2 requires every window to hold
    both highlights and non-highlights, which such a video cannot give.
    """
    items = [
        (video, sample_window(video.labels, window, min_ratio, rng))
        for video in videos
        if can_contrast(video.labels)
        for _ in range(windows_per_video(video.num_clips, window))
    ]
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def train_epoch(model, loss_fn, optimizer, items, batch_size: int, device) -> dict[str, float]:
    model.train()
    sums: dict[str, float] = {}
    for start in range(0, len(items), batch_size):
        batch = collate(items[start : start + batch_size]).to(device)
        terms = loss_fn(model(batch.visual, batch.audio, batch.mask), batch.targets, batch.mask)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
    batches = max(1, -(-len(items) // batch_size))
    return {f"loss_{name}": value / batches for name, value in sums.items()}


def scoring_modes(ev: EvalConfig) -> list[ScoringMode]:
    return ["full", "sliding"] if ev.scoring == "auto" else [ev.scoring]


def validate(model, videos: list[Video], modes: list[ScoringMode], window: int, stride: int) -> dict[str, float]:
    if not videos:
        return {}
    return {mode: domain_map(videos, score_videos(model, videos, mode, window, stride)) for mode in modes}


def fit_domain(
    split: DomainSplit,
    cfg: ExperimentConfig,
    seed: int,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FitResult:
    """Train one model on one domain; select by validation mAP; score the test split once."""
    seed_everything(seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    first = split.train[0]
    model, loss_fn, optimizer = build_components(cfg, first.visual.shape[1], first.audio.shape[1])
    model.to(device)
    rng = np.random.default_rng(seed)
    modes, window, stride = scoring_modes(cfg.eval), cfg.train.window, cfg.eval.stride
    history: list[EpochRecord] = []
    best = (-1.0, 0, modes[0], copy.deepcopy(model.state_dict()))
    for epoch in range(cfg.train.epochs + 1):  # epoch 0 scores the untrained model
        losses = {}
        if epoch > 0:
            items = epoch_windows(split.train, window, cfg.train.min_ratio, rng)
            losses = train_epoch(model, loss_fn, optimizer, items, cfg.train.batch_size, device)
        record = EpochRecord(epoch, losses, validate(model, split.val, modes, window, stride))
        history.append(record)
        if on_epoch:
            on_epoch(record)
        score, mode = record.best_val if record.val_map else (0.0, modes[0])
        # Epoch 0 is only a baseline once training runs: a noisy validation split must not pick
        # the untrained model.
        if score > best[0] or not split.val or (epoch == 1 and best[1] == 0):
            best = (score, epoch, mode, copy.deepcopy(model.state_dict()))
        if cfg.train.patience and epoch - best[1] >= cfg.train.patience:
            break
    val_map, best_epoch, mode, state = best
    model.load_state_dict(state)
    test_scores = score_videos(model, split.test, mode, window, stride)
    return FitResult(
        domain=split.domain, seed=seed, best_epoch=best_epoch, scoring=mode,
        val_map=val_map if split.val else float("nan"),
        test_map=domain_map(split.test, test_scores), test_scores=test_scores,
        history=history, state_dict=state,
    )
