"""A small synthetic dataset in the UMT layouts of YouTube Highlights and TVSum.

Highlights are where a visual event and an audio event co-occur (with a clip of jitter
between the two), and each video also carries distractor events in one modality only. A
single-modality model therefore cannot separate highlights from distractors, while a model
that relates the two streams can: the quickstart has something real to find. The TVSum layout
turns the same videos into 20 annotators' 1-5 scores, so both protocols and the top-5 metric run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hlp.storage import filesystem, write_json, write_npy

FPS = 25.0
WINDOW_FRAMES, STRIDE_FRAMES = 100, 50  # YouTube Highlights windows: 100 frames, stride 50


@dataclass(frozen=True)
class SynthSpec:
    domains: tuple[str, ...] = ("synth_a", "synth_b")
    videos_per_domain: int = 24
    test_fraction: float = 0.33
    min_clips: int = 24
    max_clips: int = 48
    rgb_dim: int = 32
    audio_dim: int = 64
    noise: float = 1.0
    event_strength: float = 1.6
    seed: int = 0


def write_synthetic(out: str, spec: SynthSpec = SynthSpec()) -> dict[str, int]:
    """Write `out/youtube/...`; returns the number of videos per domain."""
    n_test = max(1, round(spec.test_fraction * spec.videos_per_domain))
    return _write_layout(out, "youtube", spec, np.random.default_rng(spec.seed), lambda d, i: f"{d}_{i:03d}",
                         lambda _rng, domain, match: _annotation(domain, match), n_test)


TVSUM_ANNOTATORS = 20


def write_synthetic_tvsum(out: str, spec: SynthSpec = SynthSpec(domains=("SA", "SB"), videos_per_domain=5)) -> dict[str, int]:
    """Write `out/tvsum/...`: per category, the published UMT shape (4 train, 1 test video)."""
    return _write_layout(out, "tvsum", spec, np.random.default_rng(spec.seed + 1), lambda d, i: f"{d.lower()}_{i:02d}",
                         _tvsum_annotation, 1)


def _tvsum_annotation(rng: np.random.Generator, domain: str, match: np.ndarray) -> dict:
    """20 annotators' 1-5 scores: highlights around 4, the rest around 2."""
    noise = rng.normal(scale=0.8, size=(len(match), TVSUM_ANNOTATORS))
    scores = np.clip(np.rint(2.0 + 2.0 * (match > 0)[:, None] + noise), 1, 5)
    return {"domain": domain, "fps": FPS, "frames": int(len(match) * 2 * FPS), "anno": scores.tolist()}


def _write_layout(out: str, name: str, spec: SynthSpec, rng: np.random.Generator, video_id, annotate,
                  n_test: int) -> dict[str, int]:
    """`out/<name>/`: features per video, `<name>_anno.json`, and splits whose first `n_test` videos
    of each domain are the published "val" (our test) list."""
    fs, base = filesystem(out)
    root = f"{base}/{name}"
    for sub in ("video_features", "audio_features"):
        fs.makedirs(f"{root}/{sub}", exist_ok=True)
    annotations, splits = {}, {}
    for domain in spec.domains:
        prototypes = _prototypes(rng, spec)
        ids = [video_id(domain, i) for i in range(spec.videos_per_domain)]
        for vid in ids:
            rgb, opt, audio, match = _video(rng, spec, prototypes)
            write_npy(fs, f"{root}/video_features/{vid}_rgb.npy", rgb.astype(np.float16))
            write_npy(fs, f"{root}/video_features/{vid}_opt.npy", opt.astype(np.float16))
            write_npy(fs, f"{root}/audio_features/{vid}.npy", audio.astype(np.float16))
            annotations[vid] = annotate(rng, domain, match)
        splits[domain] = {"train": ids[n_test:], "val": ids[:n_test]}
    write_json(fs, f"{root}/{name}_anno.json", annotations)
    write_json(fs, f"{root}/splits.json", splits)
    return {domain: spec.videos_per_domain for domain in spec.domains}


def _prototypes(rng: np.random.Generator, spec: SynthSpec) -> dict[str, np.ndarray]:
    unit = lambda n: (v := rng.normal(size=n)) / np.linalg.norm(v) * np.sqrt(n)  # noqa: E731
    return {"visual": unit(2 * spec.rgb_dim), "audio": unit(spec.audio_dim)}


def _video(rng: np.random.Generator, spec: SynthSpec, prototypes: dict[str, np.ndarray]):
    length = int(rng.integers(spec.min_clips, spec.max_clips + 1))
    visual = rng.normal(scale=spec.noise, size=(length, 2 * spec.rgb_dim))
    audio = rng.normal(scale=spec.noise, size=(length, spec.audio_dim))
    highlight = np.zeros(length, dtype=bool)
    for kind in ("both", "both", "visual", "audio"):
        start, span = int(rng.integers(0, length - 4)), int(rng.integers(3, 6))
        clips = np.arange(start, min(length, start + span))
        if kind in ("both", "visual"):
            visual[clips] += spec.event_strength * prototypes["visual"]
        if kind in ("both", "audio"):
            shift = int(rng.integers(-1, 2)) if kind == "both" else 0
            audio[np.clip(clips + shift, 0, length - 1)] += spec.event_strength * prototypes["audio"]
        if kind == "both":
            highlight[clips] = True
    match = np.where(highlight, 1, -1)
    return visual[:, : spec.rgb_dim], visual[:, spec.rgb_dim :], audio, match


def _annotation(domain: str, match: np.ndarray) -> dict:
    frames = STRIDE_FRAMES * (len(match) + 1)
    clips = [[float(i * STRIDE_FRAMES), float(i * STRIDE_FRAMES + WINDOW_FRAMES)] for i in range(len(match))]
    return {
        "domain": domain,
        "fps": FPS,
        "frames": str(frames),
        "clip": clips,
        "match": match.tolist(),
        "mturk": [float(m > 0) for m in match],
    }
