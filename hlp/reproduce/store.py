"""Where `hlp reproduce` keeps each finished (config, seed) run: one JSON file (plus an .npz of
embeddings) per run, written atomically, so a rerun knows exactly what is done."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np


class UnitStore:
    """DIR/units/<config key>-seed<N>.json (+ .npz embeddings), or .failed.json with the error."""

    def __init__(self, root: Path) -> None:
        self.root = root / "units"
        self.root.mkdir(parents=True, exist_ok=True)
        self._read: dict[str, dict] = {}  # the report reads each result for several cells and figures

    def done(self, key: str) -> bool:
        return (self.root / f"{key}.json").exists()

    def save(self, key: str, result: dict) -> None:
        embeddings = result.pop("embeddings", None)
        if embeddings:
            arrays = {f"{d}.{k}": v for d, e in embeddings.items() for k, v in e.items()}
            _atomic(self.root / f"{key}.npz", lambda p: np.savez_compressed(p, **arrays))
        _atomic(self.root / f"{key}.json", lambda p: p.write_text(json.dumps(result)))
        (self.root / f"{key}.failed.json").unlink(missing_ok=True)
        self._read[key] = result

    def fail(self, key: str, error: str) -> None:
        (self.root / f"{key}.failed.json").write_text(json.dumps({"error": error}))

    def load(self, key: str) -> dict | None:
        path = self.root / f"{key}.json"
        if key not in self._read and path.exists():
            self._read[key] = json.loads(path.read_text())
        return self._read.get(key)

    def error(self, key: str) -> str | None:
        path = self.root / f"{key}.failed.json"
        return json.loads(path.read_text())["error"] if path.exists() else None

    def embeddings(self, key: str) -> dict[str, dict[str, np.ndarray]]:
        path = self.root / f"{key}.npz"
        if not path.exists():
            return {}
        out: dict[str, dict[str, np.ndarray]] = {}
        with np.load(path) as data:
            for name in data.files:
                domain, part = name.rsplit(".", 1)
                out.setdefault(domain, {})[part] = data[name]
        return out


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write beside, then rename: a killed run never leaves a half file that looks finished."""
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    write(tmp)
    tmp.replace(path)
