"""The training recipe: every domain of an experiment for one seed, in one explicit loop.

build components per domain -> for each epoch: every domain trains on this worker's shard of
its windows -> rank 0 scores the validation splits -> report (and checkpoint) -> keep each
domain's best epoch and scoring mode by validation mAP -> score the test splits once.
Under eval.selection kfold that loop runs once per fold (validating on the fold), the mean fold
curve fixes each domain's epoch and scoring mode, and a last run on every training video is
taken at that epoch.

Domains advance in lockstep so every epoch has one mean validation mAP, the number sweeps and
early stopping read. Rank, world size and DDP wrapping come from the caller (Ray Train's worker
function), so the same loop runs in one process or across workers; `state()` and `resume`
carry everything a restarted worker needs to continue without redoing an epoch.
The test split never influences any choice made here. `track_test` additionally scores it every
epoch, only to report what selecting on test (as UMT and lighthouse do) would have given.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hlp.config import EvalConfig, ExperimentConfig, ModelConfig, settings_of
from hlp.data.batching import collate
from hlp.data.datasets import Video
from hlp.data.protocols import DomainSplit, kfold_splits
from hlp.data.sampling import can_contrast, sample_window, windows_per_video
from hlp.evaluate.evaluation import domain_map
from hlp.evaluate.scoring import ScoringMode, score_videos
from hlp.models.losses import HighlightLoss
from hlp.models.settings import AttentionConfig, LossSettings
from hlp.models.variants import build_model


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
    phase: str = "final"  # eval.selection kfold: "fold0".."foldK-1" measure curves, "final" trains on all

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
class SelectedOnTest:
    """The best test mAP over epochs and scoring modes: the "test-selected" (optimistic) number of
    the docs, as UMT reports it; never used to choose."""
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
    test_selected_map: float = float("nan")  # with track_test: the test-selected (optimistic) number
    test_selected_epoch: int = -1
    test_selected_scoring: str = ""


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
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: torch.optim.swa_utils.AveragedModel | None = None
    best: Best = field(default_factory=Best)
    test_selected: SelectedOnTest = field(default_factory=SelectedOnTest)

    @property
    def raw(self) -> torch.nn.Module:
        """The trained network without its DDP wrapper."""
        return getattr(self.model, "module", self.model)

    @property
    def module(self) -> torch.nn.Module:
        """The weights that validate, score and are saved: the average when train.ema is on."""
        return self.ema.module if self.ema is not None else self.raw


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_network(m: ModelConfig, visual_dim: int, audio_dim: int, normalize: str = "none") -> torch.nn.Module:
    return build_model(m.variant, visual_dim, audio_dim, settings_of(m, AttentionConfig), global_init=m.global_init,
                       score_weights=dict(m.score_weights), normalize=normalize)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then constant or cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))


def build_components(cfg: ExperimentConfig, visual_dim: int, audio_dim: int, steps_per_epoch: int = 1):
    """Model, loss, optimiser and per-step schedule from plain typed constructors; input dims come
    from the data, the schedule's length from the epoch's batch count."""
    tr = cfg.train
    model = build_network(cfg.model, visual_dim, audio_dim, cfg.data.normalize)
    loss_fn = HighlightLoss(settings_of(cfg.loss, LossSettings))
    make = torch.optim.AdamW if tr.optimizer == "adamw" else torch.optim.Adam
    optimizer = make(model.parameters(), lr=tr.lr, weight_decay=tr.weight_decay)
    warmup, total = round(tr.warmup_epochs * steps_per_epoch), tr.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total, tr.schedule))
    return model, loss_fn, optimizer, scheduler


def epoch_windows(videos: list[Video], window: int, min_ratio: float, rng: np.random.Generator,
                  per_clip: float = 1.0):
    """(video, clip indices) pairs for one epoch, shuffled.

    Videos with a single class are left out: section 4.2 requires every window to hold
    both highlights and non-highlights, which such a video cannot give.
    """
    items = [
        (video, sample_window(video.labels, window, min_ratio, rng))
        for video in videos
        if can_contrast(video.labels)
        for _ in range(windows_per_video(video.num_clips, window, per_clip))
    ]
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def shard(items: list, rank: int, world: int) -> list:
    """This worker's share; every worker gets the same count, so DDP's all-reduces pair up."""
    usable = len(items) - len(items) % world if len(items) >= world else len(items)
    return items[rank:usable:world]


def train_epoch(run: DomainRun, items, batch_size: int, device, grad_clip: float | None = None,
                soft: bool = False, precision: str = "fp32") -> dict[str, float]:
    """One pass over `items`. Under train.precision bf16 only the forward and the loss run in
    autocast (CPU too): the weights, the optimiser and the backward's gradients stay fp32, and
    validation and test scoring (outside this function) too, so the metrics measure the same
    fp32 weights whatever the precision trained them. bf16 needs no loss scaling."""
    model, loss_fn, optimizer = run.model, run.loss_fn, run.optimizer
    model.train()
    sums: dict[str, float] = {}
    device_type = torch.device(device).type
    for start in range(0, len(items), batch_size):
        batch = collate(items[start : start + batch_size], soft).to(device)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            terms = loss_fn(model(batch.visual, batch.audio, batch.mask), batch.targets, batch.mask, batch.labels)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(getattr(model, "module", model))
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


def steps_per_epoch(videos: list[Video], cfg: ExperimentConfig, world: int) -> int:
    """Optimiser steps one worker takes per epoch (the schedule's unit); the window count is fixed."""
    count = sum(windows_per_video(v.num_clips, cfg.train.window, cfg.train.windows_per_clip)
                for v in videos if can_contrast(v.labels))
    per_worker = len(shard(list(range(count)), 0, world))
    return max(1, -(-per_worker // max(1, cfg.train.batch_size // world)))


def _build_runs(splits: dict[str, DomainSplit], cfg: ExperimentConfig, worker: Worker) -> dict[str, DomainRun]:
    runs = {}
    for domain, split in splits.items():
        first = split.train[0]
        model, loss_fn, optimizer, scheduler = build_components(
            cfg, first.visual.shape[1], first.audio.shape[1], steps_per_epoch(split.train, cfg, worker.world))
        inputs = getattr(model, "inputs", None)
        if inputs is not None and cfg.data.normalize == "standardize":  # statistics of training videos only
            inputs.visual.fit_statistics(torch.from_numpy(np.concatenate([v.visual for v in split.train])))
            inputs.audio.fit_statistics(torch.from_numpy(np.concatenate([v.audio for v in split.train])))
        model = model.to(worker.device)
        ema = None
        if cfg.train.ema:
            ema = torch.optim.swa_utils.AveragedModel(
                model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.train.ema), use_buffers=True)
        runs[domain] = DomainRun(split, worker.prepare(model), loss_fn, optimizer, scheduler, ema)
    return runs


def _agree_int(value: int) -> int:
    """Rank 0's integer, on every rank (decisions only rank 0 can make, e.g. early stopping,
    or how many epochs the fold curves chose, must hold on all workers together)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    tensor = torch.tensor([int(value)])
    torch.distributed.broadcast(tensor, src=0)
    return int(tensor.item())


@dataclass(frozen=True)
class Chosen:
    """An epoch and scoring mode fixed in advance (kfold), with the mean fold mAP that chose it."""

    epoch: int
    scoring: str
    val_map: float


def phases(splits: dict[str, DomainSplit], cfg: ExperimentConfig, seed: int) -> list[tuple[str, dict[str, DomainSplit]]]:
    """carve: one phase. kfold: one per fold (train on the rest, validate on it), then "final",
    which trains on every training video (validation and carve folded back in)."""
    if cfg.eval.selection == "carve":
        return [("final", splits)]
    folds = {d: kfold_splits(s, cfg.eval.folds, seed) for d, s in splits.items()}
    count = max(len(f) for f in folds.values())
    out = [(f"fold{k}", {d: f[k] for d, f in folds.items() if k < len(f)}) for k in range(count)]
    full = {d: DomainSplit(d, [*s.train, *s.val], [], s.test) for d, s in splits.items()}
    return [*out, ("final", full)]


def choose_from_folds(curves: dict[str, dict[str, list[dict[str, float]]]], modes: list[str],
                      epochs: int) -> dict[str, Chosen]:
    """Per domain, the (epoch >= 1, mode) with the best validation mAP averaged over the folds.

    `curves[fold][domain][epoch][mode]`. Ties go to the earlier epoch, then the first mode.
    """
    out: dict[str, Chosen] = {}
    for domain in {d for fold in curves.values() for d in fold}:
        runs = [fold[domain] for fold in curves.values() if domain in fold]
        candidates = [(float(np.mean([r[e][m] for r in runs])), -e, -modes.index(m), e, m)
                      for e in range(1 if epochs > 0 else 0, epochs + 1) for m in modes]
        score, _, _, epoch, mode = max(candidates)
        out[domain] = Chosen(epoch, mode, score)
    return out


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
    """Train one model per domain; select without the test split; score the test splits once (rank 0).

    `on_epoch(record, state)` is called on every rank after every epoch; `state()` builds the
    checkpoint payload that `resume` accepts. Sweep trials pass `score_test=False`: a search
    never sees the test split; `hlp reproduce` passes `track_test=True` for its optimistic column.
    Under eval.selection kfold, the fold phases run first (their curves travel in the state),
    then the final phase trains on all training videos up to the latest chosen epoch.
    """
    steps = fit_steps(splits, cfg, seed, worker, resume, score_test, track_test)
    while True:
        try:
            record, state = next(steps)
        except StopIteration as done:
            return done.value
        if on_epoch:
            on_epoch(record, state)


def fit_steps(splits: dict[str, DomainSplit], cfg: ExperimentConfig, seed: int, worker: Worker = Worker(),
              resume: dict | None = None, score_test: bool = True, track_test: bool = False,
              ) -> Generator[tuple[EpochRecord, Callable[[], dict]], None, dict[str, FitResult]]:
    """`fit` as a generator: it yields (record, state) after every epoch and returns the results,
    so a caller that streams epochs (a sweep trial's replica, a Ray task) runs the same loop."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    plan = phases(splits, cfg, seed)
    modes = scoring_modes(cfg.eval)
    curves: dict = resume.get("curves", {}) if resume else {}
    first = resume.get("phase", len(plan) - 1) if resume else 0
    for index in range(first, len(plan)):
        name, phase_splits = plan[index]
        final = name == "final"
        chosen = choose_from_folds(curves, modes, cfg.train.epochs) if final and len(plan) > 1 else None
        runs = yield from _run_phase(name, index, phase_splits, cfg, seed, worker, resume if index == first else None,
                                     track_test and final, chosen, curves)
    return _finish(runs, seed, modes, cfg.train.window, cfg.eval.stride, score_test) if worker.rank == 0 else {}


def _run_phase(name: str, index: int, splits: dict[str, DomainSplit], cfg: ExperimentConfig, seed: int,
               worker: Worker, resume: dict | None, track_test: bool, chosen: dict[str, Chosen] | None,
               curves: dict):
    seed_everything(seed)
    runs = _build_runs(splits, cfg, worker)
    # The final phase keeps the seed's own stream, so eval.selection carve is what it always was.
    rng = np.random.default_rng(seed if name == "final" else [seed, index])
    start = _restore(resume, runs, rng) if resume else 0
    modes, window, stride = scoring_modes(cfg.eval), cfg.train.window, cfg.eval.stride
    per_worker_batch = max(1, cfg.train.batch_size // worker.world)
    # Every rank must run as many epochs as rank 0, which alone holds the fold curves.
    last = _agree_int(max((c.epoch for c in chosen.values()), default=0) if chosen is not None else cfg.train.epochs)
    soft = cfg.data.targets == "soft"
    carve = name == "final" and chosen is None  # the one phase that selects on its own validation
    for epoch in range(start, last + 1):  # epoch 0 scores the untrained models
        losses, val, test = {}, {}, {}
        for domain, run in runs.items():
            if epoch > 0:
                items = shard(epoch_windows(run.split.train, window, cfg.train.min_ratio, rng,
                                            cfg.train.windows_per_clip), worker.rank, worker.world)
                losses[domain] = train_epoch(run, items, per_worker_batch, worker.device, cfg.train.grad_clip, soft,
                                             cfg.train.precision)
            if worker.rank == 0 and run.split.val:
                val[domain] = validate(run.module, run.split.val, modes, window, stride)
                if carve:  # a fold only measures its curve; nothing is kept from it
                    _update_best(run, epoch, *best_mode(val[domain]))
            if worker.rank == 0 and chosen and epoch == chosen[domain].epoch:
                c = chosen[domain]
                run.best = Best(c.val_map, c.epoch, c.scoring, copy.deepcopy(run.module.state_dict()))
            if worker.rank == 0 and track_test and (epoch > 0 or cfg.train.epochs == 0):
                test[domain] = validate(run.module, run.split.test, modes, window, stride)
                _update_test_selected(run, epoch, *best_mode(test[domain]))
        if name != "final":
            for domain, scores in val.items():
                curves.setdefault(name, {}).setdefault(domain, []).append(scores)
        record = EpochRecord(epoch, losses, val, test, name)
        yield record, lambda: _state(epoch, runs, rng, index, curves)
        # Early stopping only where validation selects: a fold's curve must cover every epoch.
        if carve and _agree_int(_patience_spent(runs, epoch, cfg.train.patience)):
            break
    return runs


def _update_best(run: DomainRun, epoch: int, score: float, mode: str) -> None:
    # Epoch 0 is only a baseline once training runs: a noisy validation split must not pick
    # the untrained model.
    if score > run.best.val_map or (epoch == 1 and run.best.epoch == 0):
        run.best = Best(score, epoch, mode, copy.deepcopy(run.module.state_dict()))


def _update_test_selected(run: DomainRun, epoch: int, score: float, mode: str) -> None:
    # Epochs from 1, as validation selects them (epoch 0, untrained, only counts when nothing trains).
    if run.test_selected.epoch < 0 or score > run.test_selected.test_map:
        run.test_selected = SelectedOnTest(score, epoch, mode)


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
        results[domain] = FitResult(
            domain=domain, seed=seed, best_epoch=best.epoch, scoring=best.scoring, val_map=best.val_map,
            test_map=test_map, test_scores=scores, state_dict=best.state, val_scores=val_scores,
            val_labels={v.video_id: v.labels for v in run.split.val},
            visual_dim=first.visual.shape[1], audio_dim=first.audio.shape[1],
            test_selected_map=run.test_selected.test_map, test_selected_epoch=run.test_selected.epoch,
            test_selected_scoring=run.test_selected.scoring)
    return results


def _state(epoch: int, runs: dict[str, DomainRun], rng: np.random.Generator, phase: int = 0,
           curves: dict | None = None) -> dict:
    """Everything needed to continue after `epoch` without redoing it.

    The tensors are live references into the models and optimisers: serialise at once.
    """
    return {
        "epoch": epoch,
        "phase": phase,
        "curves": copy.deepcopy(curves or {}),
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "domains": {
            domain: {
                "model": run.raw.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                **({"ema": run.ema.state_dict()} if run.ema is not None else {}),
                "best": _best_entry(run, epoch),
                "test_selected": asdict(run.test_selected),
            }
            for domain, run in runs.items()
        },
    }


def _best_entry(run: DomainRun, epoch: int) -> dict:
    """The best epoch's record. When that epoch is this one, its weights are the model's (or the
    average's) as they stand, so the checkpoint names them instead of holding a second copy."""
    entry = {"val_map": run.best.val_map, "epoch": run.best.epoch, "scoring": run.best.scoring}
    if run.best.epoch == epoch and run.best.state is not None:
        return {**entry, "state": None, "state_of": "ema" if run.ema is not None else "model"}
    return {**entry, "state": run.best.state}


def _restore(state: dict, runs: dict[str, DomainRun], rng: np.random.Generator) -> int:
    missing = set(runs) - set(state["domains"])
    if missing:
        raise ValueError(f"checkpoint has no state for domain(s) {sorted(missing)}")
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    for domain, run in runs.items():
        saved = state["domains"][domain]
        run.raw.load_state_dict(saved["model"])
        run.optimizer.load_state_dict(saved["optimizer"])
        if "scheduler" in saved:
            run.scheduler.load_state_dict(saved["scheduler"])
        if run.ema is not None and "ema" in saved:
            run.ema.load_state_dict(saved["ema"])
        best = dict(saved["best"])
        same_as = best.pop("state_of", None)  # the best weights are those of the epoch saved
        if same_as:
            best["state"] = copy.deepcopy((run.ema.module if same_as == "ema" else run.raw).state_dict())
        run.best = Best(**best)
        run.test_selected = SelectedOnTest(**saved.get("test_selected", saved.get("oracle", {})))  # "oracle": states before the rename
    return state["epoch"] + 1
