"""The feature extractors `hlp extract` and `hlp predict` run, with their input contracts.

Each entry declares what its network was trained on (frame rate, frames per clip, resize,
crop, normalisation; audio sample rate) and its output size, so decoding follows the
extractor rather than a setting. Sources of the contracts:
- r3d_18, r2plus1d_18: torchvision's Kinetics-400 weights (`VideoClassification` transform:
  resize 128x171, crop 112, its mean/std; 16-frame clips at 15 fps in its video reference).
- resnet34_3d: Hara et al., 3D-ResNets-PyTorch (16 x 112 x 112, pixel means on the 0-255
  scale, no std scaling, shorter side resized to 112).
- cnn14: Kong et al., PANNs (32 kHz mono, 2048-d embedding).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hlp.extract.media import FrameContract
from hlp.models.extractors import Cnn14, load_state, r2plus1d_18, r3d_18, resnet34_3d
from hlp.storage import filesystem, torch_load_refusal

RANDOM = "random"


class ExtractorError(ValueError):
    """Extractor weights that cannot be found, read or loaded; the message says what to provide."""


@dataclass(frozen=True)
class VisualSpec:
    build: Callable[[], torch.nn.Module]
    contract: FrameContract
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float  # applied to 0-255 pixels before mean/std
    dim: int
    download: str | None = None  # torchvision's published file, fetched when no weights are given
    expected_file: str = ""


@dataclass(frozen=True)
class AudioSpec:
    build: Callable[[], torch.nn.Module]
    sample_rate: int
    dim: int
    expected_file: str


_TV_MEAN, _TV_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
_TV_CONTRACT = FrameContract(fps=15.0, frames=16, resize=(128, 171), crop=112)

VISUAL: dict[str, VisualSpec] = {
    "r3d_18": VisualSpec(r3d_18, _TV_CONTRACT, _TV_MEAN, _TV_STD, 1 / 255, 512,
                         "https://download.pytorch.org/models/r3d_18-b3b3357e.pth", "r3d_18-b3b3357e.pth"),
    "r2plus1d_18": VisualSpec(r2plus1d_18, _TV_CONTRACT, _TV_MEAN, _TV_STD, 1 / 255, 512,
                              "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
                              "r2plus1d_18-91a641e6.pth"),
    "resnet34_3d": VisualSpec(resnet34_3d, FrameContract(fps=25.0, frames=16, resize=(112, 149), crop=112),
                              (114.7748, 107.7354, 99.4750), (1.0, 1.0, 1.0), 1.0, 512,
                              expected_file="resnet-34-kinetics.pth (Hara et al., 3D-ResNets-PyTorch)"),
}
AUDIO: dict[str, AudioSpec] = {
    "cnn14": AudioSpec(Cnn14, 32000, 2048, "Cnn14_mAP=0.431.pth (Kong et al., PANNs, zenodo.org/record/3987831)"),
}


@dataclass(frozen=True)
class ExtractorInfo:
    """What a store or a checkpoint records about an extractor; enough to run it again."""

    name: str
    version: str  # sha256 prefix of the weights file, `torchvision-...`, or `random-seed0`
    weights: str | None
    dim: int

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "weights": self.weights, "dim": self.dim}


NO_AUDIO = ExtractorInfo("none", "none", None, 0)


def visual_info(name: str, weights: str | None) -> ExtractorInfo:
    """Resolve the weights (without building the network) and name their version."""
    spec = VISUAL[name]
    return ExtractorInfo(name, _version(name, weights, spec.download, spec.expected_file), weights, spec.dim)


def audio_info(name: str, weights: str | None) -> ExtractorInfo:
    if name == "none":
        return NO_AUDIO
    spec = AUDIO[name]
    return ExtractorInfo(name, _version(name, weights, None, spec.expected_file), weights, spec.dim)


def build(info: ExtractorInfo, spec: VisualSpec | AudioSpec) -> torch.nn.Module:
    """The network with its weights, in eval mode; a changed weights file is refused."""
    if info.weights == RANDOM:
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same random network on every node and in `hlp predict`
            model = spec.build()
        return model.eval()
    model = spec.build()
    state, version = _state_dict(info.name, info.weights, getattr(spec, "download", None), spec.expected_file)
    if version != info.version:
        raise ExtractorError(f"{info.name}: weights {info.weights or 'download'} are version {version}, "
                             f"but {info.version} was recorded; the file changed since the features were made")
    try:
        load_state(model, state)
    except ValueError as exc:
        raise ExtractorError(f"{info.name}: {info.weights or spec.download} does not hold {info.name} weights: {exc}") from None
    return model.eval()


def _version(name: str, weights: str | None, download: str | None, expected: str) -> str:
    if weights == RANDOM:
        return "random-seed0"
    if weights is None:
        if download is None:
            raise ExtractorError(f"{name} needs its weights: set weights to a local path or s3:// URI of {expected}, "
                                 f"or `random` for an untrained network")
        return "torchvision-kinetics400-" + download.rsplit("-", 1)[-1].split(".")[0]
    return _sha(_read(name, weights))


def _state_dict(name: str, weights: str | None, download: str | None, expected: str) -> tuple[dict, str]:
    if weights is None:
        return _download(name, download, expected), _version(name, None, download, expected)
    payload = _read(name, weights)
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ExtractorError(f"{name}: cannot read weights {weights}: {_load_refusal(exc)}") from None
    return state, _sha(payload)


def _load_refusal(exc: Exception) -> str:
    text = str(exc).strip()
    return torch_load_refusal(exc) or (text.splitlines()[0][:300] if text else
                                       f"{type(exc).__name__}: empty or truncated file")


def _download(name: str, url: str | None, expected: str) -> dict:
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - offline shows up as URLError, OSError, ...
        raise ExtractorError(f"{name}: no weights given and the download of {url} failed ({exc}); set weights "
                             f"to a local path or s3:// URI of {expected}") from None


def _read(name: str, weights: str) -> bytes:
    fs, path = filesystem(weights)
    if not fs.exists(path):
        raise ExtractorError(f"{name}: weights file not found: {weights}")
    with fs.open(path, "rb") as handle:
        return handle.read()


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:12]


def normalise(frames: np.ndarray, spec: VisualSpec, device: torch.device) -> torch.Tensor:
    """uint8 (n, T, H, W, 3) -> float (n, 3, T, H, W) as the network was trained."""
    x = torch.from_numpy(writable(frames)).to(device).float() * spec.scale
    mean = torch.tensor(spec.mean, device=device) * 1.0
    std = torch.tensor(spec.std, device=device)
    return ((x - mean) / std).permute(0, 4, 1, 2, 3).contiguous()


def writable(array: np.ndarray) -> np.ndarray:
    """Ray Data hands out read-only views of Arrow memory; torch wants arrays it may write."""
    return array if array.flags.writeable and array.flags.c_contiguous else np.array(array)
