"""Running the extractors on decoded clips: shared by the Ray Data model stage and `hlp predict`,
so a checkpoint's features are made the same way at training and at prediction time."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from hlp.extract.media import ClipChunk
from hlp.extract.registry import (
    AUDIO,
    VISUAL,
    ExtractorInfo,
    build,
    normalise,
    writable,
)


class ClipEmbedder:
    def __init__(self, visual: ExtractorInfo, audio: ExtractorInfo, device: str = "cpu", bf16: bool = False) -> None:
        self.device = torch.device(device)
        self.visual_spec = VISUAL[visual.name]
        self.visual = build(visual, self.visual_spec).to(self.device)
        self.audio = build(audio, AUDIO[audio.name]).to(self.device)
        self.audio_dim = audio.dim
        # bf16 autocast on GPU roughly doubles throughput; features are stored as float32 anyway
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    @torch.inference_mode()
    def __call__(self, chunk: ClipChunk) -> tuple[np.ndarray, np.ndarray]:
        """(visual (n, Dv), audio (n, Da)) float32. A silent video gets zero audio features (not
        Cnn14's response to silence), so `has_audio` and the vector agree."""
        with self.autocast:
            visual = self.visual(normalise(chunk.frames, self.visual_spec, self.device)).float()
            if chunk.has_audio:
                audio = self.audio(torch.from_numpy(writable(chunk.audio)).to(self.device)).float()
            else:
                audio = torch.zeros(len(chunk.frames), self.audio_dim, device=self.device)
        return visual.cpu().numpy(), audio.cpu().numpy()
