"""One short line per epoch, and how it reaches the person watching.

The lines say which run, which epoch, the loss, the validation mAP, the time so far and what is
left. The estimate is the mean time of the epochs trained in this process so far, so a resumed
run does not count the epochs it skipped. The driver prints every line itself, in order and
before a command's closing table: a sweep's trials from the results Tune hands it
(`hlp.sweep.trial.EpochLines`), a TorchTrainer's from its rank-0 worker through `EpochRelay`.
Lines of runs that train side by side carry the run's label (`[best] seed 0 | epoch 3/8 | ...`).
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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


# Which run a line belongs to, where runs train side by side (a sweep's `best` and `defaults`
# finals, each in a thread of the driver): `labelled` sets it for a call, `with_label` writes it.
_RUN_LABEL: contextvars.ContextVar[str | None] = contextvars.ContextVar("hlp_run_label", default=None)


def labelled(label: str, call: Callable[..., T]) -> Callable[..., T]:
    """`call`, with every line it says through `with_label` prefixed `[label] `."""

    def run(*args, **kwargs) -> T:
        token = _RUN_LABEL.set(label)
        try:
            return call(*args, **kwargs)
        finally:
            _RUN_LABEL.reset(token)

    return run


def with_label(line: str, label: str | None = None) -> str:
    """`[label] line` inside `labelled` (or with `label`), once however often it is applied."""
    label = label if label is not None else _RUN_LABEL.get()
    return f"[{label}] {line}" if label and not line.startswith(f"[{label}] ") else line


SEND_TIMEOUT_S = 30.0  # how long a worker waits for the relay to take a line


class _Lines:
    """The actor that holds epoch lines between a worker that hands them over and the driver."""

    def __init__(self) -> None:
        self._lines: dict[str, list[str]] = {}

    def put(self, key: str, line: str) -> None:
        self._lines.setdefault(key, []).append(line)

    def since(self, key: str, said: int) -> list[str]:
        """The lines after the first `said` (a call that timed out loses none)."""
        return self._lines.get(key, [])[said:]

    def forget(self, key: str) -> None:
        self._lines.pop(key, None)


_actor_lock = threading.Lock()
_actor: dict[str, object] = {}  # the job's id -> its one _Lines actor (created on first use)


def _lines_actor():
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    context = ray.get_runtime_context()
    with _actor_lock:
        if context.get_job_id() not in _actor:
            _actor.clear()  # a Ray of an earlier job (tests start several in one process)
            _actor[context.get_job_id()] = ray.remote(_Lines).options(
                num_cpus=0,  # never waits for a CPU the runs hold
                scheduling_strategy=NodeAffinitySchedulingStrategy(context.get_node_id(), soft=True)).remote()
        return _actor[context.get_job_id()]


class EpochRelay:
    """Brings one run's epoch lines to the driver, which says them itself (with the run's label).

    Ray forwards what a worker prints through its log monitor: late (a run's last epochs printed
    after the command's closing table), deduplicated ("[repeated 5x across cluster]") and, without
    --verbose, not at all (hlp.cluster). So rank 0 hands each line to a small actor (`send`,
    which waits until the actor holds it) and the driver takes them every POLL_S, and once more
    after the run's fit has returned: by then every line is in the actor, so all of them are said
    before the command goes on."""

    POLL_S = 0.25

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say, self._label = say, _RUN_LABEL.get()  # the label of the thread that runs the fit
        self.target = (_lines_actor(), uuid.uuid4().hex)  # what the worker gets (`send`)
        self._said = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True, name="hlp-epoch-lines")

    def __enter__(self) -> EpochRelay:
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            return  # an interrupted command exits at once; the daemon thread ends with it
        self._thread.join()
        self._take(timeout=30)  # the last lines, which the worker handed over before its fit returned
        self.target[0].forget.remote(self.target[1])

    def _follow(self) -> None:
        while not self._stop.wait(self.POLL_S):
            self._take(timeout=5)

    def _take(self, timeout: float) -> None:
        import ray

        actor, key = self.target
        try:
            lines = ray.get(actor.since.remote(key, self._said), timeout=timeout)
        except Exception:  # noqa: BLE001 - slow, or Ray going down under an error (which is what matters)
            return
        self._said += len(lines)
        for line in lines:
            self._say(with_label(line, self._label))


def send(target: tuple | None, line: str) -> None:
    """Hand `line` to the driver's relay (`EpochRelay.target`) and wait until it holds it; without
    one, or should the relay not answer, print it (Ray forwards a worker's prints to the
    driver's terminal under --verbose only). A line never fails the training."""
    if target is not None:
        import ray

        actor, key = target
        try:
            ray.get(actor.put.remote(key, line), timeout=SEND_TIMEOUT_S)
            return
        except Exception:  # noqa: BLE001 - the relay is gone (its driver is)
            pass
    print(line, flush=True)
