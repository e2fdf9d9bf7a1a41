"""Log-mel front end laid out like torchlibrosa's, so PANNs checkpoints load strictly.

PANNs (Kong et al. 2020, qiuqiangkong/audioset_tagging_cnn) compute features with
torchlibrosa (qiuqiangkong/torchlibrosa, torchlibrosa/stft.py): an STFT written as two
Conv1d layers holding the windowed DFT basis (`stft.conv_real`, `stft.conv_imag`) and a
mel matrix `melW`. All three are frozen nn.Parameters and are saved in the checkpoint,
so they are parameters here too. The basis is built in float64 and rounded once, and the
mel matrix follows librosa's `filters.mel` (Slaney scale and area normalisation, htk=False),
computed here without librosa.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def periodic_hann(n: int) -> Tensor:
    """librosa's `get_window('hann', n, fftbins=True)`: the periodic Hann window, float64."""
    k = torch.arange(n, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * k / n)


def dft_kernels(n_fft: int) -> tuple[Tensor, Tensor]:
    """Hann-windowed one-sided DFT basis as Conv1d weights, each (n_fft // 2 + 1, 1, n_fft).

    Row k holds w[n] * exp(-2 pi i k n / N); `(k * n) % N` keeps the angle small, so the
    float64 cos/sin stay exact before rounding to float32.
    """
    n = torch.arange(n_fft, dtype=torch.int64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.int64)
    angle = 2 * math.pi * ((k[:, None] * n[None, :]) % n_fft).to(torch.float64) / n_fft
    window = periodic_hann(n_fft)
    real = (torch.cos(angle) * window).float()[:, None, :]
    imag = (-torch.sin(angle) * window).float()[:, None, :]
    return real, imag


def _frozen_conv(weight: Tensor, stride: int) -> nn.Conv1d:
    conv = nn.Conv1d(1, weight.shape[0], weight.shape[-1], stride=stride, bias=False)
    conv.weight.data.copy_(weight)
    conv.weight.requires_grad_(False)
    return conv


class ConvSTFT(nn.Module):
    """STFT by strided Conv1d (torchlibrosa's `STFT`), centred with reflect padding like librosa."""

    def __init__(self, n_fft: int = 1024, hop_length: int = 320) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        real, imag = dft_kernels(n_fft)
        self.conv_real = _frozen_conv(real, hop_length)
        self.conv_imag = _frozen_conv(imag, hop_length)

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """(B, samples) -> real and imaginary parts, each (B, 1, frames, n_fft // 2 + 1)."""
        x = F.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(x).transpose(1, 2)[:, None], self.conv_imag(x).transpose(1, 2)[:, None]


class Spectrogram(nn.Module):
    """Power spectrogram |STFT|^2, (B, 1, frames, n_fft // 2 + 1); the STFT sits under `.stft`."""

    def __init__(self, n_fft: int = 1024, hop_length: int = 320) -> None:
        super().__init__()
        self.stft = ConvSTFT(n_fft, hop_length)

    def forward(self, wave: Tensor) -> Tensor:
        real, imag = self.stft(wave)
        return real**2 + imag**2


_F_SP = 200.0 / 3  # Slaney: 3 mels per 200 Hz below 1 kHz, ...
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0  # ... and log-spaced above, 27 steps per factor 6.4


def hz_to_mel(hz: Tensor) -> Tensor:
    """librosa's `hz_to_mel(htk=False)`: the Slaney (Auditory Toolbox) scale, linear then log."""
    log_part = _MIN_LOG_MEL + torch.log(hz.clamp_min(_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log_part, hz / _F_SP)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of `hz_to_mel`."""
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel.clamp_min(_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log_part, mel * _F_SP)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> Tensor:
    """librosa's `filters.mel(norm='slaney', htk=False)`, transposed to (n_fft // 2 + 1, n_mels) as `melW`.

    Triangles are linear in Hz between mel-spaced edges; each is scaled by 2 / (its width in Hz)
    so every filter has the same area.
    """
    fft_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)
    lo, hi = hz_to_mel(torch.tensor([fmin, fmax], dtype=torch.float64)).tolist()
    edges = mel_to_hz(torch.linspace(lo, hi, n_mels + 2, dtype=torch.float64))
    widths = edges.diff()
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = torch.minimum(rising, falling).clamp_min(0.0)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.float().contiguous()


class LogMel(nn.Module):
    """Mel projection and `10 * log10(max(mel, amin))` (librosa `power_to_db`, ref 1.0, no top_db)."""

    def __init__(
        self, sample_rate: int = 32000, n_fft: int = 1024, n_mels: int = 64, fmin: float = 50.0, fmax: float = 14000.0
    ) -> None:
        super().__init__()
        self.amin = 1e-10
        self.melW = nn.Parameter(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax), requires_grad=False)

    def forward(self, power: Tensor) -> Tensor:
        """(..., n_fft // 2 + 1) power -> (..., n_mels) decibels."""
        return 10.0 * torch.log10((power @ self.melW).clamp_min(self.amin))
