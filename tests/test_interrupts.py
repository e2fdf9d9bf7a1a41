"""hlp.interrupts with real signals: one owner of SIGINT and SIGTERM for a whole command, also
while a call of Ray's would have installed handlers of its own (the end-to-end cases: the sweep's
Ctrl-C in tests/sweep/test_sweep_interrupt.py, `hlp train`'s SIGTERM in tests/train/test_run.py)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from hlp.interrupts import Interrupted, interruptible, ray_call


def _send_soon(signum: int, delay: float = 0.3) -> None:
    threading.Timer(delay, os.kill, (os.getpid(), signum)).start()


def test_a_signal_during_a_long_call_off_the_main_thread_raises_at_once():
    started = time.monotonic()
    with pytest.raises(Interrupted) as caught, interruptible():
        _send_soon(signal.SIGTERM)
        ray_call(time.sleep, 30)  # as Tune's and Train's fit: the main thread waits with hlp's handlers
    assert caught.value.signum == signal.SIGTERM and time.monotonic() - started < 10


def test_a_call_that_installs_its_own_handler_gets_hlps_back_afterwards():
    def init_like_ray():  # ray.init: a SIGTERM handler that exits (it would abort the command)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
        return "joined"

    with pytest.raises(Interrupted) as caught, interruptible():
        assert ray_call(init_like_ray, off_main=False) == "joined"
        _send_soon(signal.SIGTERM, 0.1)
        time.sleep(5)
    assert caught.value.signum == signal.SIGTERM


def test_a_handler_of_the_calls_own_that_exits_is_an_interrupt():
    def fit_like_train():  # Train's handler aborts the run, then sys.exit(0): not a success
        signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(0))
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    with pytest.raises(Interrupted) as caught, interruptible():
        ray_call(fit_like_train, off_main=False)
    assert caught.value.signum == signal.SIGINT


def test_an_interrupt_that_ray_turned_into_a_plain_one_keeps_its_signal():
    with pytest.raises(Interrupted) as caught, interruptible():
        try:
            _send_soon(signal.SIGTERM, 0.1)
            time.sleep(5)
        except Interrupted:
            raise KeyboardInterrupt from None  # what Ray does to a subclass raised inside its calls
    assert caught.value.signum == signal.SIGTERM


def test_the_previous_handlers_come_back_and_a_call_outside_a_command_is_plain():
    before = signal.getsignal(signal.SIGTERM)
    with interruptible():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    assert ray_call(lambda x: x + 1, 1) == 2
    with pytest.raises(ValueError, match="bad"), interruptible():
        ray_call(lambda: (_ for _ in ()).throw(ValueError("bad")))  # an error in the thread comes through
