"""Extractor networks: output contracts, checkpoint layouts of the published weights, the log-mel front end.

Reference numbers and where they come from:
- torchvision's weights metadata `num_params` (torchvision/models/video/resnet.py):
  r3d_18 33,371,472 and r2plus1d_18 31,505,325, both with the 400-class `fc`.
- PANNs, Table XII: Cnn14 has 80,753,615 parameters (with the 527-class head, without
  the frozen torchlibrosa front end, which the checkpoint stores as parameters too).
- librosa 0.11.0 `filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000)` and
  `mel_frequencies(66, fmin=50, fmax=14000)`, evaluated offline; values below.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hlp.models.extractors import Cnn14, load_state, r2plus1d_18, r3d_18, resnet34_3d
from hlp.models.extractors.spectrogram import Spectrogram, mel_filterbank
from hlp.models.extractors.video_resnet import ZeroPadShortcut

VIDEO_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "r3d_18": r3d_18,
    "r2plus1d_18": r2plus1d_18,
    "resnet34_3d_A": resnet34_3d,
    "resnet34_3d_B": lambda: resnet34_3d("B"),
}
CNN14_PAPER_PARAMS = 80_753_615
FRONT_END_PARAMS = 2 * 513 * 1024 + 513 * 64  # conv_real + conv_imag + melW


@functools.cache
def _shared(name: str) -> nn.Module:
    """One eval-mode instance per architecture for the tests that only read it (building costs seconds).

    Its BatchNorm statistics are not the initial 0 / 1, so a checkpoint made from it also tests
    that buffers load.
    """
    torch.manual_seed(0)
    model = Cnn14() if name == "cnn14" else VIDEO_FACTORIES[name]()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def _release_shared_models():
    """The shared models hold about 1 GB; free them once this module is done."""
    yield
    _shared.cache_clear()


@pytest.fixture()
def cnn14() -> Cnn14:
    return _shared("cnn14")


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _bn(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.{s}": (n,) for s in ("weight", "bias", "running_mean", "running_var")}
    return keys | {f"{prefix}.num_batches_tracked": ()}


def _torchvision_layout(factorised: bool) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of torchvision's r3d_18 / r2plus1d_18, written out from its VideoResNet source."""
    if factorised:  # R2Plus1dStem: conv 1x7x7 -> 45, BN, ReLU, conv 3x1x1 -> 64, BN, ReLU
        keys = {"stem.0.weight": (45, 3, 1, 7, 7), **_bn("stem.1", 45), "stem.3.weight": (64, 45, 3, 1, 1)}
        keys |= _bn("stem.4", 64)
    else:  # BasicStem: conv 3x7x7 -> 64, BN, ReLU
        keys = {"stem.0.weight": (64, 3, 3, 7, 7), **_bn("stem.1", 64)}
    in_ch = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p, block_in = f"layer{layer}.{block}", in_ch if block == 0 else planes
            mid = block_in * planes * 27 // (block_in * 9 + 3 * planes)
            for conv, conv_in in (("conv1", block_in), ("conv2", planes)):
                if factorised:  # Conv2Plus1D: .0 spatial conv, .1 BN, .3 temporal conv
                    keys[f"{p}.{conv}.0.0.weight"] = (mid, conv_in, 1, 3, 3)
                    keys |= _bn(f"{p}.{conv}.0.1", mid)
                    keys[f"{p}.{conv}.0.3.weight"] = (planes, mid, 3, 1, 1)
                else:
                    keys[f"{p}.{conv}.0.weight"] = (planes, conv_in, 3, 3, 3)
                keys |= _bn(f"{p}.{conv}.1", planes)
            if block == 0 and layer > 1:
                keys[f"{p}.downsample.0.weight"] = (planes, in_ch, 1, 1, 1)
                keys |= _bn(f"{p}.downsample.1", planes)
        in_ch = planes
    return keys | {"fc.weight": (400, 512), "fc.bias": (400,)}


def _hara_layout(shortcut: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of Hara's ResNet-34 (models/resnet.py): flat conv/bn names, downsample only for 'B'."""
    keys = {"conv1.weight": (64, 3, 7, 7, 7), **_bn("bn1", 64)}
    in_ch = 64
    for layer, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(n):
            p, block_in = f"layer{layer}.{block}", in_ch if block == 0 else planes
            keys[f"{p}.conv1.weight"] = (planes, block_in, 3, 3, 3)
            keys |= _bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3, 3)
            keys |= _bn(f"{p}.bn2", planes)
            if block == 0 and layer > 1 and shortcut == "B":
                keys[f"{p}.downsample.0.weight"] = (planes, in_ch, 1, 1, 1)
                keys |= _bn(f"{p}.downsample.1", planes)
        in_ch = planes
    return keys | {"fc.weight": (400, 512), "fc.bias": (400,)}


def _cnn14_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of PANNs' Cnn14 checkpoint (state dict under "model")."""
    keys = {
        "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
        "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
        "logmel_extractor.melW": (513, 64),
        **_bn("bn0", 64),
    }
    for i, (cin, cout) in enumerate(zip((1, 64, 128, 256, 512, 1024), (64, 128, 256, 512, 1024, 2048)), start=1):
        keys[f"conv_block{i}.conv1.weight"] = (cout, cin, 3, 3)
        keys[f"conv_block{i}.conv2.weight"] = (cout, cout, 3, 3)
        keys |= _bn(f"conv_block{i}.bn1", cout) | _bn(f"conv_block{i}.bn2", cout)
    keys |= {"fc1.weight": (2048, 2048), "fc1.bias": (2048,)}
    return keys | {"fc_audioset.weight": (527, 2048), "fc_audioset.bias": (527,)}


def _fresh(name: str) -> nn.Module:
    """A new instance, initialised differently from `_shared`'s."""
    torch.manual_seed(1)
    return (Cnn14() if name == "cnn14" else VIDEO_FACTORIES[name]()).eval()


# --- video networks --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VIDEO_FACTORIES))
def test_video_model_returns_pooled_512d_embedding(name: str) -> None:
    model = _shared(name)
    with torch.no_grad():
        emb = model(torch.randn(2, 3, 16, 112, 112))
    assert model.embedding_dim == 512
    assert emb.shape == (2, 512)
    assert torch.isfinite(emb).all()
    assert (emb >= 0).all()  # an average of post-ReLU activations, i.e. taken before `fc`
    assert not torch.allclose(emb[0], emb[1])


def test_video_model_rejects_non_clip_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        _shared("r3d_18")(torch.randn(2, 16, 3, 112, 112))


@pytest.mark.parametrize(
    ("name", "factorised", "num_params"), [("r3d_18", False, 33_371_472), ("r2plus1d_18", True, 31_505_325)]
)
def test_torchvision_layouts_match_published_checkpoints(name: str, factorised: bool, num_params: int) -> None:
    model = _shared(name)
    assert _shapes(model) == _torchvision_layout(factorised)
    assert _n_params(model) == num_params  # torchvision's Weights meta "num_params"


def test_r2plus1d_midplanes_follow_torchvision_formula() -> None:
    shapes = _shapes(_shared("r2plus1d_18"))
    assert shapes["layer1.0.conv1.0.0.weight"][0] == 144
    assert shapes["layer2.0.conv1.0.0.weight"] == (230, 64, 1, 3, 3)  # 64*128*27 // (64*9 + 3*128)
    assert shapes["layer2.0.conv2.0.0.weight"] == (230, 128, 1, 3, 3)  # the block's value, reused by conv2
    assert shapes["layer4.0.conv1.0.0.weight"][0] == 921
    assert shapes["layer4.1.conv1.0.0.weight"][0] == 1152


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_hara_resnet34_layout(shortcut: str) -> None:
    model = _shared(f"resnet34_3d_{shortcut}")
    assert _shapes(model) == _hara_layout(shortcut)
    extra = 0 if shortcut == "A" else sum(p * q + 2 * p for p, q in ((128, 64), (256, 128), (512, 256)))
    assert _n_params(model) == 63_544_912 + extra


def test_hara_rejects_unknown_shortcut() -> None:
    with pytest.raises(ValueError, match="shortcut"):
        resnet34_3d("C")  # type: ignore[arg-type]


def test_shortcut_a_is_strided_identity_with_zero_channels() -> None:
    x = torch.randn(2, 3, 5, 6, 7)
    out = ZeroPadShortcut(8, stride=2)(x)
    assert out.shape == (2, 8, 3, 3, 4)
    assert torch.equal(out[:, :3], F.avg_pool3d(x, kernel_size=1, stride=2))  # Hara's formulation
    assert not out[:, 3:].any()


# --- Cnn14 and its front end -------------------------------------------------------------


def test_cnn14_returns_2048d_embedding(cnn14: Cnn14) -> None:
    t = torch.arange(2 * 32000) / 32000
    waves = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 0.1 * torch.randn(t.numel())])
    with torch.no_grad():
        emb = cnn14(waves)
        second = cnn14(waves[1:])
    assert cnn14.embedding_dim == 2048
    assert emb.shape == (2, 2048)
    assert torch.isfinite(emb).all() and (emb >= 0).all()  # ReLU(fc1)
    assert not torch.allclose(emb[0], emb[1])
    torch.testing.assert_close(emb[1:], second, rtol=1e-4, atol=1e-5)


def test_cnn14_rejects_too_short_or_multichannel_audio(cnn14: Cnn14) -> None:
    with pytest.raises(ValueError, match="at least 9920 samples"):
        cnn14(torch.zeros(1, 9000))
    with pytest.raises(ValueError, match=r"\(B, samples\)"):
        cnn14(torch.zeros(1, 2, 32000))


def test_cnn14_layout_and_parameter_count(cnn14: Cnn14) -> None:
    assert _shapes(cnn14) == _cnn14_layout()
    trainable = sum(p.numel() for p in cnn14.parameters() if p.requires_grad)
    assert trainable == CNN14_PAPER_PARAMS
    assert _n_params(cnn14) == CNN14_PAPER_PARAMS + FRONT_END_PARAMS


def test_conv_stft_power_equals_torch_stft() -> None:
    wave = torch.randn(2, 16000)
    ours = Spectrogram(1024, 320)(wave)[:, 0].transpose(1, 2)  # (B, 513, frames)
    window = torch.hann_window(1024, periodic=True, dtype=torch.float64)
    ref = (
        torch.stft(wave.double(), 1024, 320, window=window, center=True, pad_mode="reflect", return_complex=True).abs()
        ** 2
    )
    assert ours.shape == ref.shape == (2, 513, 1 + 16000 // 320)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-3, atol=1e-5 * ref.max().item())


def test_mel_filterbank_matches_librosa_reference_values() -> None:
    mel_w = mel_filterbank(32000, 1024, 64, 50.0, 14000.0)
    assert mel_w.shape == (513, 64)
    # (fft bin, mel bin) -> librosa 0.11.0 filters.mel(...).T; each filter's peak bin and support
    expected = {(3, 0): 0.01501181349158287, (33, 17): 0.015040571801364422, (32, 16): 0.0075781443156301975}
    expected |= {(118, 40): 0.004703423008322716, (424, 63): 0.0013412120752036572}
    for (f, m), value in expected.items():
        assert mel_w[f, m].item() == pytest.approx(value, rel=1e-5)
    support = {0: (2, 5), 17: (31, 34), 40: (112, 124), 63: (401, 447)}
    for m, (lo, hi) in support.items():
        nonzero = torch.nonzero(mel_w[:, m]).flatten()
        assert (nonzero.min().item(), nonzero.max().item()) == (lo, hi)


def test_logmel_of_1khz_sine_peaks_in_the_1khz_mel_bin(cnn14: Cnn14) -> None:
    # librosa.mel_frequencies(66, fmin=50, fmax=14000): filter 16 peaks at 967.7 Hz, filter 17 at
    # 1022.7 Hz, so 1 kHz lies inside filter 17's triangle, nearest its peak.
    t = torch.arange(32000) / 32000
    logmel = cnn14.logmel(torch.sin(2 * math.pi * 1000 * t)[None])  # (1, 1, frames, 64)
    profile = logmel[0, 0].mean(dim=0)
    assert profile.argmax().item() == 17
    assert profile[17] - profile[40] > 60  # dB: far bins hold only window leakage


def test_logmel_stays_float32_under_bf16_autocast(cnn14: Cnn14) -> None:
    wave = torch.randn(1, 16000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = cnn14.logmel(wave)
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, cnn14.logmel(wave))


def test_logmel_floor_is_minus_100_db_for_silence(cnn14: Cnn14) -> None:
    logmel = cnn14.logmel(torch.zeros(1, 16000))
    assert torch.equal(logmel, torch.full_like(logmel, -100.0))  # 10 * log10(amin = 1e-10), no top_db


# --- load_state ----------------------------------------------------------------------------


def _dataparallel_in_model(state: dict[str, torch.Tensor]) -> dict:
    """A checkpoint of a DataParallel model stored under "model" (as PANNs' files)."""
    return {"model": {f"module.{k}": v.clone() for k, v in state.items()}, "iteration": 3}


def _hara_2017(state: dict[str, torch.Tensor]) -> dict:
    """Hara's 2017 files: DataParallel keys under "state_dict", saved before BN had num_batches_tracked."""
    tensors = {f"module.{k}": v.clone() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return {"epoch": 200, "arch": "resnet-34", "state_dict": tensors, "optimizer": {}}


@pytest.mark.parametrize(
    ("name", "wrap"),
    [
        ("r3d_18", _dataparallel_in_model),
        ("r2plus1d_18", _dataparallel_in_model),
        ("resnet34_3d_A", _hara_2017),
        ("cnn14", _dataparallel_in_model),
    ],
)
def test_load_state_round_trip_through_checkpoint_wrappers(name: str, wrap: Callable[[dict], dict]) -> None:
    source, fresh = _shared(name), _fresh(name)
    x = torch.randn(1, 16000) if name == "cnn14" else torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        expected = source(x)
        assert not torch.allclose(fresh(x), expected)
        load_state(fresh, wrap(source.state_dict()))
        assert torch.equal(fresh(x), expected)
    loaded, original = fresh.state_dict(), source.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in original.items())


def test_load_state_names_mismatches_for_wrong_architecture() -> None:
    with pytest.raises(ValueError) as info:
        load_state(_shared("r2plus1d_18"), _shared("r3d_18").state_dict())
    message = str(info.value)
    assert "not for r2plus1d_18" in message
    assert "stem.0.weight: file (64, 3, 3, 7, 7) vs model (45, 3, 1, 7, 7)" in message
    assert "101 missing keys (stem.3.weight" in message  # R(2+1)D's temporal stem conv
    assert "unexpected keys (layer1.0.conv1.0.weight" in message  # R3D's full 3D conv


def test_load_state_reports_variant_mismatch_and_leaves_model_untouched() -> None:
    model = _shared("resnet34_3d_A")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"18 unexpected keys \(layer2\.0\.downsample\.0\.weight"):
        load_state(model, _shared("resnet34_3d_B").state_dict())
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_load_state_rejects_non_tensor_entries() -> None:
    with pytest.raises(ValueError, match="not a state dict"):
        load_state(_shared("r3d_18"), {"epoch": 3, "weights": [1, 2]})
