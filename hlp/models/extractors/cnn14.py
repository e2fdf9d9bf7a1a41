"""PANN Cnn14, the paper's audio extractor (Kong et al. 2020, "PANNs: Large-Scale Pretrained
Audio Neural Networks for Audio Pattern Recognition"; qiuqiangkong/audioset_tagging_cnn,
pytorch/models.py, class Cnn14).

Attribute names follow the source, so `Cnn14_mAP=0.431.pth` (state dict under "model")
loads strictly with `load_state`. Two parts of the source are left out because they are
training-time augmentation without state: SpecAugment and mixup.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hlp.models.extractors.spectrogram import LogMel, Spectrogram

CHANNELS = (64, 128, 256, 512, 1024, 2048)


class ConvBlock(nn.Module):
    """Two conv3x3-BN-ReLU, then average pooling (PANNs' VGG-like block)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: Tensor, pool: tuple[int, int]) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool)


class Cnn14(nn.Module):
    """Waveform (B, samples) at `sample_rate` -> the 2048-d `embedding` (B, 2048).

    Log-mel (B, 1, frames, mel_bins), `bn0` over the mel axis, six ConvBlocks (2x2 average
    pooling except 1x1 after the last, dropout 0.2 after each in training), mean over
    frequency, max + mean over time, dropout 0.5, ReLU(`fc1`), dropout 0.5. `fc_audioset`
    (the AudioSet tagging head) is kept for checkpoint compatibility but not applied.
    The defaults are the published 32 kHz model's settings.
    """

    embedding_dim: int = 2048

    def __init__(
        self,
        sample_rate: int = 32000,
        window_size: int = 1024,
        hop_size: int = 320,
        mel_bins: int = 64,
        fmin: float = 50.0,
        fmax: float = 14000.0,
        classes_num: int = 527,
    ) -> None:
        super().__init__()
        self.sample_rate, self.hop_size = sample_rate, hop_size
        self.spectrogram_extractor = Spectrogram(window_size, hop_size)
        self.logmel_extractor = LogMel(sample_rate, window_size, mel_bins, fmin, fmax)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        for i, (cin, cout) in enumerate(zip((1,) + CHANNELS[:-1], CHANNELS), start=1):
            self.add_module(f"conv_block{i}", ConvBlock(cin, cout))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, classes_num)
        for fc in (self.fc1, self.fc_audioset):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    @property
    def min_samples(self) -> int:
        """Shortest input that survives the five 2x time poolings (32 frames)."""
        return 31 * self.hop_size

    def logmel(self, waveform: Tensor) -> Tensor:
        """(B, samples) -> (B, 1, frames, mel_bins) decibels, frames = 1 + samples // hop_size.

        Always float32, also under autocast: a 1024-tap DFT in bfloat16 would swamp quiet bins in rounding.
        """
        if waveform.ndim != 2:
            raise ValueError(f"expected mono waveforms of shape (B, samples), got {tuple(waveform.shape)}")
        if waveform.shape[1] < self.min_samples:
            raise ValueError(
                f"need at least {self.min_samples} samples ({self.min_samples / self.sample_rate:.2f} s), "
                f"got {waveform.shape[1]}"
            )
        with torch.autocast(waveform.device.type, enabled=False):
            return self.logmel_extractor(self.spectrogram_extractor(waveform.float()))

    def forward(self, waveform: Tensor) -> Tensor:
        x = self.logmel(waveform)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        blocks = [getattr(self, f"conv_block{i}") for i in range(1, len(CHANNELS) + 1)]
        for i, block in enumerate(blocks):
            x = block(x, (1, 1) if i == len(blocks) - 1 else (2, 2))
            x = F.dropout(x, 0.2, self.training)
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, 0.5, self.training)
        return F.dropout(F.relu(self.fc1(x)), 0.5, self.training)
