"""The one owner of SIGINT and SIGTERM: Ctrl-C and `kill` (a scheduler ending a job) stop a
command the same way, wherever it is.

Ray installs handlers of its own when called from the main thread, and each does something
else with the signal: `ray.init` exits on SIGTERM (an exit that aborts, 134), Train's `fit`
aborts the run on SIGINT and then calls `sys.exit(0)` (an interrupted command would exit as a
success), Tune's `fit` ends the search as if it were complete. So `interruptible` installs hlp's
handlers for a whole command: a signal is recorded and raised as `Interrupted` in the main
thread. And `ray_call` runs each such call of Ray's: the long ones (Tune's and Train's `fit`)
off the main thread, where Ray installs no handler, while the main thread waits with hlp's in
place; `ray.init` in it, with hlp's handlers put back afterwards. Whatever the call did with a
signal, one recorded during it is raised once it returns.

The interrupted command's MLflow runs are closed KILLED by the `with` blocks they are open in,
on the way out; a call left running in its daemon thread ends with the process.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The command was stopped by `signum` (Ray turns a subclass raised inside its calls into a
    plain KeyboardInterrupt, so the signal is also recorded in `_received`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the signals of the running command (a process runs one at a time)
_owner: list[bool] = []  # whether `interruptible` is active, so `ray_call` knows whom to serve


def _on_signal(signum, frame) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def _install() -> None:
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


@contextmanager
def interruptible() -> Iterator[None]:
    """For a whole command, in the main thread: a signal raises `Interrupted`; an interrupt that
    Ray turned into a plain KeyboardInterrupt, or into the SystemExit of a handler of its own,
    comes out as `Interrupted` too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _received.clear()
    _owner.append(True)
    _install()
    try:
        yield
    except Interrupted:
        raise
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and not _received and exc.code not in (0, None):
            raise  # a command that exits with a code of its own
        raise Interrupted(_received[0] if _received else signal.SIGINT) from None
    finally:
        _owner.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ray_call(call: Callable[..., T], *args: Any, off_main: bool = True, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`, interruptible as the rest of the command (see the module's
    docstring). `off_main`: run it in a daemon thread (Tune's and Train's `fit`); else in this
    thread, with hlp's handlers put back once it returns (`ray.init`, which must run here).
    Outside `interruptible`, or off the main thread, it is a plain call."""
    if not _owner or threading.current_thread() is not threading.main_thread():
        return call(*args, **kwargs)
    seen = len(_received)
    try:
        result = _in_thread(call, args, kwargs) if off_main else call(*args, **kwargs)
    except SystemExit as exc:  # one of Ray's handlers took the signal: ray.init's exits with its number, Train's 0
        taken = exc.code if exc.code in SIGNALS else signal.SIGINT
        raise Interrupted(_received[-1] if len(_received) > seen else taken) from None
    finally:
        _install()
    if len(_received) > seen:  # the call swallowed it
        raise Interrupted(_received[-1])
    return result


def _in_thread(call: Callable[..., T], args: tuple, kwargs: dict) -> T:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name=getattr(call, "__qualname__", "ray-call"))
    thread.start()
    while thread.is_alive():
        thread.join(0.2)  # a signal's handler runs here, in the main thread, and raises
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
