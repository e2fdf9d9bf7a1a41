"""3D ResNets that load the published Kinetics-400 checkpoints unchanged.

Each network copies its source module for module, so `state_dict()` keys and shapes are
the checkpoint's and `load_state` can use strict loading (a wrong file fails loudly
instead of silently leaving layers random):

- `r3d_18`, `r2plus1d_18`: torchvision's video ResNets
  (torchvision/models/video/resnet.py; Tran et al. 2018, "A Closer Look at
  Spatiotemporal Convolutions for Action Recognition").
- `resnet34_3d`: Hara et al.'s 3D ResNet-34 (kenshohara/3D-ResNets-PyTorch,
  models/resnet.py of the 2017 release, file resnet-34-kinetics.pth; Hara et al. 2018,
  "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?").

All take a normalised clip (B, 3, T, H, W), trained on T=16, H=W=112, and return the
pooled 512-d vector that feeds `fc`. `fc` stays as a module only so the checkpoints load;
forward never applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

# (in_channels, out_channels, midplanes, stride) -> a conv whose output is out_channels wide.
ConvBuilder = Callable[[int, int, int, int], nn.Module]

WIDTHS = (64, 128, 256, 512)
STRIDES = (1, 2, 2, 2)


def _check_clip(x: Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"expected a clip batch of shape (B, 3, T, H, W), got {tuple(x.shape)}")


def _init_weights(model: nn.Module) -> None:
    """Kaiming fan-out for convs, unit BN, as both sources do; loading weights replaces it anyway."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _projection(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """1x1x1 conv + BN shortcut (He et al.'s option B), strided in time and space alike."""
    return nn.Sequential(nn.Conv3d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm3d(out_ch))


# --- torchvision's video ResNets -----------------------------------------------------


def conv3d_simple(in_ch: int, out_ch: int, midplanes: int, stride: int) -> nn.Module:
    """Full 3x3x3 conv (R3D); `midplanes` is unused, it exists for the (2+1)D builder."""
    return nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv2plus1d(in_ch: int, out_ch: int, midplanes: int, stride: int) -> nn.Module:
    """(2+1)D: a 1x3x3 spatial conv into `midplanes` channels, BN, ReLU, then a 3x1x1 temporal conv.

    torchvision keeps it a plain Sequential, so its keys are `.0` (spatial), `.1` (BN), `.3` (temporal).
    """
    return nn.Sequential(
        nn.Conv3d(in_ch, midplanes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(midplanes),
        nn.ReLU(inplace=True),
        nn.Conv3d(midplanes, out_ch, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
    )


def midplanes(in_ch: int, planes: int) -> int:
    """Width between the (2+1)D convs that gives about the parameters of one 3x3x3 conv (Tran et al. 3.5).

    torchvision computes it once per block from the block's input and output widths and uses it
    for both convs of the block.
    """
    return (in_ch * planes * 27) // (in_ch * 9 + 3 * planes)


class TorchvisionBasicBlock(nn.Module):
    """torchvision's video BasicBlock: `conv1` = conv-BN-ReLU, `conv2` = conv-BN, optional `downsample`."""

    def __init__(self, in_ch: int, planes: int, conv: ConvBuilder, stride: int = 1) -> None:
        super().__init__()
        mid = midplanes(in_ch, planes)
        self.conv1 = nn.Sequential(conv(in_ch, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv(planes, planes, mid, 1), nn.BatchNorm3d(planes))
        self.downsample = _projection(in_ch, planes, stride) if stride != 1 or in_ch != planes else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


def r3d_stem() -> nn.Sequential:
    """3x7x7 conv, stride (1, 2, 2): halves space, keeps time."""
    return nn.Sequential(
        nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


def r2plus1d_stem() -> nn.Sequential:
    """The stem factorised as (2+1)D too: 1x7x7 into 45 channels, then 3x1x1 into 64."""
    return nn.Sequential(
        nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(45),
        nn.ReLU(inplace=True),
        nn.Conv3d(45, 64, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


class TorchvisionVideoResNet(nn.Module):
    """torchvision's VideoResNet with BasicBlocks: `stem`, `layer1..4`, `avgpool`, `fc`."""

    embedding_dim: int = 512

    def __init__(
        self, stem: nn.Sequential, conv: ConvBuilder, blocks: tuple[int, int, int, int], num_classes: int, arch: str
    ) -> None:
        super().__init__()
        self.arch = arch
        self.stem = stem
        in_ch = 64
        for i, (planes, stride, n) in enumerate(zip(WIDTHS, STRIDES, blocks), start=1):
            layer = [TorchvisionBasicBlock(in_ch, planes, conv, stride)]
            layer += [TorchvisionBasicBlock(planes, planes, conv) for _ in range(n - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            in_ch = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        _check_clip(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.avgpool(x).flatten(1)


def r3d_18(num_classes: int = 400) -> TorchvisionVideoResNet:
    """R3D-18: torchvision `r3d_18`, all convs 3x3x3 (checkpoint r3d_18-b3b3357e.pth)."""
    return TorchvisionVideoResNet(r3d_stem(), conv3d_simple, (2, 2, 2, 2), num_classes, "r3d_18")


def r2plus1d_18(num_classes: int = 400) -> TorchvisionVideoResNet:
    """R(2+1)D-18: torchvision `r2plus1d_18`, every conv factorised (checkpoint r2plus1d_18-91a641e6.pth)."""
    return TorchvisionVideoResNet(r2plus1d_stem(), conv2plus1d, (2, 2, 2, 2), num_classes, "r2plus1d_18")


# --- Hara et al.'s 3D ResNet ---------------------------------------------------------


class ZeroPadShortcut(nn.Module):
    """Shortcut type 'A' (He et al. 2016, option A): strided identity, new channels zero.

    Parameter-free, so it adds no state-dict keys; Hara's ResNet-18/34 Kinetics files were
    trained with it. Hara writes the subsampling as `avg_pool3d(kernel_size=1, stride)`,
    which is this slicing. Unlike Hara's code, which concatenates `out.data`, the shortcut
    here stays differentiable (the values are the same).
    """

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s, ::s]
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


class HaraBasicBlock(nn.Module):
    """Hara's BasicBlock: flat `conv1`/`bn1`/`conv2`/`bn2` attributes (not torchvision's Sequentials)."""

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + shortcut)


class Hara3DResNet(nn.Module):
    """Hara's 3D ResNet: 7x7x7 `conv1` (stride 1,2,2), `bn1`, max-pool, `layer1..4`, pool, `fc`.

    The source pools with a fixed AvgPool3d sized for its input (1x4x4 at 16x112x112);
    adaptive pooling gives the same vector there and also accepts other clip sizes.
    """

    embedding_dim: int = 512

    def __init__(
        self,
        blocks: tuple[int, int, int, int] = (3, 4, 6, 3),
        shortcut: Literal["A", "B"] = "A",
        num_classes: int = 400,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.arch = f"hara_resnet{2 * sum(blocks) + 2}_3d_{shortcut}"
        self.conv1 = nn.Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        in_ch = 64
        for i, (planes, stride, n) in enumerate(zip(WIDTHS, STRIDES, blocks), start=1):
            self.add_module(f"layer{i}", self._layer(in_ch, planes, stride, n, shortcut))
            in_ch = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)
        _init_weights(self)

    @staticmethod
    def _layer(in_ch: int, planes: int, stride: int, n: int, shortcut: Literal["A", "B"]) -> nn.Sequential:
        down: nn.Module | None = None
        if stride != 1 or in_ch != planes:
            down = ZeroPadShortcut(planes, stride) if shortcut == "A" else _projection(in_ch, planes, stride)
        first = HaraBasicBlock(in_ch, planes, stride, down)
        return nn.Sequential(first, *(HaraBasicBlock(planes, planes) for _ in range(n - 1)))

    def forward(self, x: Tensor) -> Tensor:
        _check_clip(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def resnet34_3d(shortcut: Literal["A", "B"] = "A", num_classes: int = 400) -> Hara3DResNet:
    """Hara's 3D ResNet-34, blocks [3, 4, 6, 3]; 'A' matches resnet-34-kinetics.pth (its README)."""
    return Hara3DResNet((3, 4, 6, 3), shortcut, num_classes)
