"""The training recipe: every domain of an experiment for one seed, in one explicit loop.

build components per domain -> for each epoch: every domain trains on this worker's shard of
its windows -> rank 0 scores the validation splits -> report (and checkpoint) -> keep each
domain's best epoch and scoring mode by validation mAP -> score the test splits once.

Domains advance in lockstep so every epoch has one mean validation mAP, the number sweeps and
early stopping read. Rank, world size and DDP wrapping come from the caller (Ray Train's worker
function), so the same loop runs in one process or across workers; `state()` and `resume`
carry everything a restarted worker needs to continue without redoing an epoch.
The test split never influences any choice made here. `track_test` additionally scores it every
epoch, only to report what selecting on test (as UMT and lighthouse do) would have given.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hlp.models.attention import AttentionConfig
from hlp.models.losses import HighlightLoss
from hlp.models.variants import build_model
from hlp.platform.batching import collate
from hlp.platform.config import EvalConfig, ExperimentConfig, ModelConfig
from hlp.platform.datasets import Video
from hlp.platform.evaluation import domain_map
from hlp.platform.protocols import DomainSplit
from hlp.platform.sampling import can_contrast, sample_window, windows_per_video
from hlp.platform.scoring import ScoringMode, score_videos


def best_mode(scores: dict[str, float]) -> tuple[float, str]:
    """(best validation mAP, its scoring mode); ties go to the first mode listed."""
    mode = max(scores, key=lambda m: scores[m])
    return scores[mode], mode


@dataclass
class EpochRecord:
    epoch: int
    losses: dict[str, dict[str, float]]  # domain -> loss term -> mean over batches (this worker)
    val_map: dict[str, dict[str, float]]  # domain -> scoring mode -> validation mAP (rank 0 only)
    test_map: dict[str, dict[str, float]] = field(default_factory=dict)  # only with track_test

    def best_val(self, domain: str) -> tuple[float, str]:
        return best_mode(self.val_map[domain])

    @property
    def mean_val_map(self) -> float:
        return float(np.mean([self.best_val(d)[0] for d in self.val_map])) if self.val_map else float("nan")


@dataclass
class Best:
    val_map: float = -1.0
    epoch: int = 0
    scoring: str = "full"
    state: dict[str, torch.Tensor] | None = None


@dataclass
class Oracle:
    """The best test mAP over epochs and scoring modes: the optimistic number, never used to choose."""

    test_map: float = float("nan")
    epoch: int = -1
    scoring: str = ""


@dataclass
class FitResult:
    domain: str
    seed: int
    best_epoch: int
    scoring: str
    val_map: float
    test_map: float
    test_scores: dict[str, np.ndarray]
    state_dict: dict[str, torch.Tensor] | None = None
    val_scores: dict[str, np.ndarray] = field(default_factory=dict)  # the selected model, for figures
    val_labels: dict[str, np.ndarray] = field(default_factory=dict)  # so figures need no second data load
    visual_dim: int = 0  # input sizes, so the saved model can be rebuilt
    audio_dim: int = 0
    oracle_test_map: float = float("nan")  # with track_test: the test-selected (optimistic) number
    oracle_epoch: int = -1
    oracle_scoring: str = ""


@dataclass
class Worker:
    """Where this copy of the loop runs; the defaults are a single process."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    prepare: Callable[[torch.nn.Module], torch.nn.Module] = lambda model: model  # e.g. DDP wrapping


@dataclass
class DomainRun:
    split: DomainSplit
    model: torch.nn.Module  # possibly DDP-wrapped
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    best: Best = field(default_factory=Best)
    oracle: Oracle = field(default_factory=Oracle)

    @property
    def module(self) -> torch.nn.Module:
        return getattr(self.model, "module", self.model)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_network(m: ModelConfig, visual_dim: int, audio_dim: int) -> torch.nn.Module:
    arch = AttentionConfig(d_model=m.d_model, heads=m.heads, layers=m.layers, d_k=m.d_k, d_v=m.d_v,
                           ffn_dim=m.ffn_dim, dropout=m.dropout)
    return build_model(m.variant, visual_dim, audio_dim, arch, global_init=m.global_init,
                       score_weights=dict(m.score_weights))


def build_components(cfg: ExperimentConfig, visual_dim: int, audio_dim: int):
    """Model, loss and optimiser from plain typed constructors; input dims come from the data."""
    lo = cfg.loss
    model = build_network(cfg.model, visual_dim, audio_dim)
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


def shard(items: list, rank: int, world: int) -> list:
    """This worker's share; every worker gets the same count, so DDP's all-reduces pair up."""
    usable = len(items) - len(items) % world if len(items) >= world else len(items)
    return items[rank:usable:world]


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


def _build_runs(splits: dict[str, DomainSplit], cfg: ExperimentConfig, worker: Worker) -> dict[str, DomainRun]:
    runs = {}
    for domain, split in splits.items():
        first = split.train[0]
        model, loss_fn, optimizer = build_components(cfg, first.visual.shape[1], first.audio.shape[1])
        runs[domain] = DomainRun(split, worker.prepare(model.to(worker.device)), loss_fn, optimizer)
    return runs


def _agree(flag: bool) -> bool:
    """Rank 0's decision, on every rank (early stopping must stop all workers together)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([int(flag)])
    torch.distributed.broadcast(value, src=0)
    return bool(value.item())


def fit(
    splits: dict[str, DomainSplit],
    cfg: ExperimentConfig,
    seed: int,
    worker: Worker = Worker(),
    resume: dict | None = None,
    on_epoch: Callable[[EpochRecord, Callable[[], dict]], None] | None = None,
    score_test: bool = True,
    track_test: bool = False,
) -> dict[str, FitResult]:
    """Train one model per domain; select by validation mAP; score the test splits once (rank 0).

    `on_epoch(record, state)` is called on every rank after every epoch; `state()` builds the
    checkpoint payload that `resume` accepts. Sweep trials pass `score_test=False`: a search
    never sees the test split; `hlp reproduce` passes `track_test=True` for its optimistic column.
    """
    seed_everything(seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    runs = _build_runs(splits, cfg, worker)
    rng = np.random.default_rng(seed)
    start = _restore(resume, runs, rng) if resume else 0
    modes, window, stride = scoring_modes(cfg.eval), cfg.train.window, cfg.eval.stride
    per_worker_batch = max(1, cfg.train.batch_size // worker.world)
    for epoch in range(start, cfg.train.epochs + 1):  # epoch 0 scores the untrained models
        losses, val, test = {}, {}, {}
        for domain, run in runs.items():
            if epoch > 0:
                items = shard(epoch_windows(run.split.train, window, cfg.train.min_ratio, rng), worker.rank, worker.world)
                losses[domain] = train_epoch(run.model, run.loss_fn, run.optimizer, items, per_worker_batch, worker.device)
            if worker.rank == 0 and run.split.val:
                val[domain] = validate(run.module, run.split.val, modes, window, stride)
                _update_best(run, epoch, *best_mode(val[domain]))
            if worker.rank == 0 and track_test and (epoch > 0 or cfg.train.epochs == 0):
                test[domain] = validate(run.module, run.split.test, modes, window, stride)
                _update_oracle(run, epoch, *best_mode(test[domain]))
        record = EpochRecord(epoch, losses, val, test)
        if on_epoch:
            on_epoch(record, lambda: _state(epoch, runs, rng))
        if _agree(_patience_spent(runs, epoch, cfg.train.patience)):
            break
    return _finish(runs, seed, modes, window, stride, score_test) if worker.rank == 0 else {}


def _update_best(run: DomainRun, epoch: int, score: float, mode: str) -> None:
    # Epoch 0 is only a baseline once training runs: a noisy validation split must not pick
    # the untrained model.
    if score > run.best.val_map or (epoch == 1 and run.best.epoch == 0):
        run.best = Best(score, epoch, mode, copy.deepcopy(run.module.state_dict()))


def _update_oracle(run: DomainRun, epoch: int, score: float, mode: str) -> None:
    # Epochs from 1, as validation selects them (epoch 0, untrained, only counts when nothing trains).
    if run.oracle.epoch < 0 or score > run.oracle.test_map:
        run.oracle = Oracle(score, epoch, mode)


def _patience_spent(runs: dict[str, DomainRun], epoch: int, patience: int | None) -> bool:
    return bool(patience) and all(epoch - run.best.epoch >= patience for run in runs.values())


def _finish(runs: dict[str, DomainRun], seed: int, modes, window: int, stride: int,
            score_test: bool) -> dict[str, FitResult]:
    results = {}
    for domain, run in runs.items():
        best = run.best if run.best.state is not None else Best(float("nan"), 0, modes[0], run.module.state_dict())
        run.module.load_state_dict(best.state)
        scores = score_videos(run.module, run.split.test, best.scoring, window, stride) if score_test else {}
        test_map = domain_map(run.split.test, scores) if score_test else float("nan")
        val_scores = score_videos(run.module, run.split.val, best.scoring, window, stride)
        first = run.split.train[0]
        results[domain] = FitResult(domain, seed, best.epoch, best.scoring, best.val_map, test_map, scores,
                                    best.state, val_scores, {v.video_id: v.labels for v in run.split.val},
                                    first.visual.shape[1], first.audio.shape[1],
                                    run.oracle.test_map, run.oracle.epoch, run.oracle.scoring)
    return results


def _state(epoch: int, runs: dict[str, DomainRun], rng: np.random.Generator) -> dict:
    """Everything needed to continue after `epoch` without redoing it.

    The tensors are live references into the models and optimisers: serialise at once.
    """
    return {
        "epoch": epoch,
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "domains": {
            domain: {
                "model": run.module.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "best": {"val_map": run.best.val_map, "epoch": run.best.epoch, "scoring": run.best.scoring,
                         "state": run.best.state},
                "oracle": asdict(run.oracle),
            }
            for domain, run in runs.items()
        },
    }


def _restore(state: dict, runs: dict[str, DomainRun], rng: np.random.Generator) -> int:
    missing = set(runs) - set(state["domains"])
    if missing:
        raise ValueError(f"checkpoint has no state for domain(s) {sorted(missing)}")
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    for domain, run in runs.items():
        saved = state["domains"][domain]
        run.module.load_state_dict(saved["model"])
        run.optimizer.load_state_dict(saved["optimizer"])
        run.best = Best(**saved["best"])
        run.oracle = Oracle(**saved.get("oracle", {}))
    return state["epoch"] + 1
