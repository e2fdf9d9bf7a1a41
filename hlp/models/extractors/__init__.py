"""Pretrained feature-extractor networks in plain PyTorch: the paper's video and audio backbones.

Architectures only, laid out so the published checkpoints load strictly with `load_state`;
reading checkpoint files and decoding media happen elsewhere.
"""

from hlp.models.extractors.cnn14 import Cnn14
from hlp.models.extractors.state import load_state
from hlp.models.extractors.video_resnet import (
    Hara3DResNet,
    TorchvisionVideoResNet,
    r2plus1d_18,
    r3d_18,
    resnet34_3d,
)

__all__ = ["Cnn14", "Hara3DResNet", "TorchvisionVideoResNet", "load_state", "r2plus1d_18", "r3d_18", "resnet34_3d"]
