"""One short line per epoch, printed by the worker that validates (rank 0).

Ray forwards a worker's prints to the driver's terminal; with Ray's own logs quiet (the CLI
default, `--verbose` brings them back) these lines are what a person watches: which run, which
epoch, the loss, the validation mAP, the time so far and what is left. The estimate is the mean
time of the epochs trained in this process so far, so a resumed run does not count the epochs it
skipped.
"""

from __future__ import annotations

import time


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class EpochLine:
    """Formats the epoch lines of one run; `started` is when its first epoch began here."""

    def __init__(self, label: str, epochs: int, started: float | None = None) -> None:
        self.label, self.epochs = label, epochs
        self.started = time.perf_counter() if started is None else started
        self.first_epoch: int | None = None

    def __call__(self, epoch: int, loss: float | None, val_map: float | None, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        if self.first_epoch is None:
            self.first_epoch = epoch
        elapsed = now - self.started
        # Epochs trained here (epoch 0 only validates the untrained model).
        trained = epoch - self.first_epoch + (0 if self.first_epoch == 0 else 1)
        left = max(0, self.epochs - epoch)
        eta = _clock(elapsed / trained * left) if trained > 0 else "?"
        parts = [self.label, f"epoch {epoch}/{self.epochs}"]
        if loss is not None:
            parts.append(f"loss {loss:.3f}")
        if val_map is not None:
            parts.append(f"val mAP {val_map:.3f}")
        parts += [f"{_clock(elapsed)} elapsed", f"ETA {eta}" if left else "done"]
        return " | ".join(parts)
