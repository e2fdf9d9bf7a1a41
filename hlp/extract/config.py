"""Typed settings of `hlp extract`, loaded like experiment files (same errors, `--set`).

Few settings: the extractors' input contracts (frame rate, size, sample rate) and output
dimensions are facts of the networks, declared in `registry.py`, not knobs here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hlp.config import _no_password, _Section

VisualName = Literal["r3d_18", "r2plus1d_18", "resnet34_3d"]
AudioName = Literal["cnn14", "none"]


class ClipConfig(_Section):
    seconds: float = Field(2.0, gt=0.0)  # the public releases use 2 s clips
    last: Literal["pad", "drop"] = "pad"  # the final partial clip: padded to full length, or dropped


class VisualChoice(_Section):
    name: VisualName = "r3d_18"
    # A local path or s3:// URI of the weights file; `random` (tests, benchmarks) initialises
    # from a fixed seed; null downloads torchvision's Kinetics-400 weights when online.
    weights: str | None = None

    _no_secret = field_validator("weights")(_no_password)


class AudioChoice(_Section):
    name: AudioName = "cnn14"
    weights: str | None = None  # path or s3:// URI of Cnn14_mAP=0.431.pth, or `random`

    _no_secret = field_validator("weights")(_no_password)


class ExtractResources(_Section):
    address: str | None = None  # an existing Ray cluster; default: RAY_ADDRESS, else a local one
    actors: int = Field(1, ge=1)  # model-stage actors (one model copy each)
    gpus_per_actor: float = Field(0.0, ge=0.0)
    cpus_per_actor: float = Field(1.0, gt=0.0)
    decode_cpus: float = Field(1.0, gt=0.0)  # per decode task
    batch_size: int = Field(16, ge=1)  # clips per model forward = clips per stored chunk
    threads: int | None = Field(None, ge=1)  # torch threads per actor (CPU inference)
    bf16: bool = False  # bf16 autocast in the model stage (GPUs); features are stored as float32

    _no_secret = field_validator("address")(_no_password)


class ExtractionConfig(_Section):
    name: str = "extract"
    inputs: str  # a glob, a .txt list of paths/URIs, a directory, or an s3:// prefix
    output: str  # the feature store: a local directory or s3://bucket/prefix
    clip: ClipConfig = ClipConfig()
    visual: VisualChoice = VisualChoice()
    audio: AudioChoice = AudioChoice()
    resources: ExtractResources = ExtractResources()

    _no_secret = field_validator("inputs", "output")(_no_password)
