"""`hlp predict`: score every clip of a new video with a trained model and cut its highlights.

Features are made exactly as the training features were: the checkpoint records the
extractors (and their weights' versions) and the clip grid of the store it was trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from hlp.data.datasets import Video
from hlp.evaluate.scoring import score_video
from hlp.extract.embedding import ClipEmbedder
from hlp.extract.inputs import open_video
from hlp.extract.media import iter_chunks
from hlp.extract.registry import AUDIO, VISUAL, ExtractorInfo
from hlp.train import model_file
from hlp.train.model_file import CheckpointError, ModelFile


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    score: float
    clips: list[int]


def predict(video: str, checkpoint: str, top_k: int | None = None, threshold: float | None = None,
            device: str = "cpu", loaded: ModelFile | None = None) -> dict:
    """`loaded`: the model, when the caller read it (`--model` resolves a URI to its model file);
    `checkpoint` then names where it came from."""
    loaded = model_file.load(checkpoint) if loaded is None else loaded
    features = _check_features(loaded, checkpoint)
    clip_index, start_s, end_s, visual, audio, has_audio = _extract(video, features, device)
    vid = os.path.splitext(os.path.basename(video))[0]
    scores = score_clips(loaded, visual, audio, vid, device)
    chosen = select(scores, top_k, threshold)
    segments = merge(chosen, scores, start_s, end_s)
    return {
        "video": video, "video_id": vid, "checkpoint": checkpoint, "domain": loaded.domain,
        "duration_s": float(end_s[-1]), "has_audio": has_audio, "clip_seconds": features["clip_seconds"],
        "extractors": {"visual": features["visual"], "audio": features["audio"]},
        "selection": {"top_k": top_k} if threshold is None else {"threshold": threshold},
        "clips": [{"clip_index": int(i), "start_s": float(s), "end_s": float(e), "score": float(p)}
                  for i, s, e, p in zip(clip_index, start_s, end_s, scores)],
        "segments": [vars(seg) for seg in segments],
    }


def score_clips(loaded: ModelFile, visual: np.ndarray, audio: np.ndarray, video_id: str = "clips",
                device: str = "cpu") -> np.ndarray:
    """The score of each clip of one video from its (T, Dv) and (T, Da) features, with the scoring
    the model file records (full, or sliding windows and stride): `hlp predict` and the MLflow
    Model (hlp/predict/mlflow_pyfunc.py) both score through here, so they agree by construction."""
    clip_video = Video(video_id, loaded.domain, np.asarray(visual, np.float32), np.asarray(audio, np.float32),
                       np.zeros(len(visual), bool))
    return score_video(loaded.model.to(device), clip_video, loaded.scoring, loaded.window, loaded.stride)


def _check_features(model_file: ModelFile, checkpoint: str) -> dict:
    features = model_file.features
    if features is None:
        raise CheckpointError(f"{checkpoint} was trained on the UMT release's features (I3D + PANN), which hlp "
                              f"cannot compute from a video; train on a store written by `hlp extract` "
                              f"(data.format: parquet, data.features: STORE) to predict on new videos")
    visual, audio = features["visual"], features["audio"]
    if visual["name"] not in VISUAL or audio["name"] not in AUDIO:
        raise CheckpointError(f"{checkpoint}: its extractors {visual['name']} + {audio['name']} are not ones "
                              f"hlp can run (visual: {sorted(VISUAL)}, audio: {sorted(AUDIO)})")
    if (visual["dim"], audio["dim"]) != (model_file.visual_dim, model_file.audio_dim):
        raise CheckpointError(f"{checkpoint}: the model takes {model_file.visual_dim}-d visual and "
                              f"{model_file.audio_dim}-d audio features, but its extractors {visual['name']} and "
                              f"{audio['name']} give {visual['dim']} and {audio['dim']}")
    return features


def _extract(video: str, features: dict, device: str):
    """Clip features of one video, chunk by chunk, so its length is not capped by memory."""
    visual_info, audio_info = ExtractorInfo(**features["visual"]), ExtractorInfo(**features["audio"])
    embed = ClipEmbedder(visual_info, audio_info, device)
    parts: list[tuple] = []
    with open_video(video) as source:
        for chunk in iter_chunks(source, clip_seconds=features["clip_seconds"], last_clip=features["last_clip"],
                                 contract=VISUAL[visual_info.name].contract, chunk_clips=features["chunk_clips"]):
            parts.append((chunk.clip_index, chunk.start_s, chunk.end_s, *embed(chunk), chunk.has_audio))
    columns = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    return (*columns, bool(parts[0][5]))


def select(scores: np.ndarray, top_k: int | None, threshold: float | None) -> np.ndarray:
    """Indices of the highlight clips: the k best, or every clip at or above the threshold."""
    if threshold is not None:
        return np.flatnonzero(scores >= threshold)
    k = min(top_k if top_k is not None else 5, len(scores))
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def merge(chosen: np.ndarray, scores: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> list[Segment]:
    """Adjacent chosen clips become one segment, scored by the mean of its clips."""
    segments: list[Segment] = []
    for run in np.split(chosen, np.flatnonzero(np.diff(chosen) > 1) + 1) if len(chosen) else []:
        segments.append(Segment(float(start_s[run[0]]), float(end_s[run[-1]]), float(scores[run].mean()),
                                [int(i) for i in run]))
    return segments
