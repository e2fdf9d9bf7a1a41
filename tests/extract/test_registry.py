"""The extractors' weights loader refuses a file that carries pickled code, and says so itself."""

from __future__ import annotations

import os

import pytest
import torch

from hlp.extract.registry import VISUAL, ExtractorError, ExtractorInfo, build


class Exploit:
    """What a hostile weights file carries: unpickling it would run a shell command."""

    def __reduce__(self):
        return os.system, ("touch PWNED",)


def test_weights_with_pickled_code_are_not_a_safe_model_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "r3d_18.pt"
    torch.save({"conv1.weight": torch.zeros(1), "hook": Exploit()}, weights)
    with pytest.raises(ExtractorError) as refused:
        build(ExtractorInfo("r3d_18", "any", str(weights), 512), VISUAL["r3d_18"])
    message = str(refused.value)
    assert f"cannot read weights {weights}: not a safe model file" in message and "system" in message, message
    assert "weights_only" not in message and "safe_globals" not in message, message  # no advice to load it anyway
    assert not (tmp_path / "PWNED").exists()
