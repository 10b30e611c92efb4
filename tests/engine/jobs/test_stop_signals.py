"""Signals to a stop token: repeats of one request within the window, a later one quits at once.

The handler is installed in a child Python process (signals are process-wide, and only a main thread installs
handlers), which signals itself and prints what its token saw.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sixtyfour_sync.engine.jobs.signals import Repeats


def test_the_first_signal_stops_repeats_within_the_window_are_the_same_request() -> None:
    r = Repeats(window=1.0)
    assert r.see(100.0) == "stop"
    assert r.see(100.0) == "repeat"
    assert r.see(100.99) == "repeat"
    assert r.see(101.0) == "quit"
    assert r.see(100.5) == "repeat"  # the window is counted from the first, not the latest


def _child(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """\
        import os, signal, sys, threading, time
        from sixtyfour_sync.engine.jobs.scheduler import StopToken
        from sixtyfour_sync.engine.jobs.signals import handle_signals

        token = StopToken()
        firsts = []
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)


def test_signals_in_a_burst_are_one_request_and_the_block_ends_normally() -> None:
    done = _child(
        """\
        with handle_signals(token, firsts.append):
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10
            while not token.requested and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # the repeats are read too
        os.kill(os.getpid(), signal.SIGINT)  # after the block: ignored, the process is on its way out
        time.sleep(0.1)
        print(token.reason, token.exit_code, firsts)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped by SIGTERM 143 ['SIGTERM']"


def test_a_signal_after_the_window_quits_at_once_while_the_main_thread_waits_in_c() -> None:
    done = _child(
        """\
        with handle_signals(token, firsts.append, window=0.2):
            def later():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGINT)
            threading.Thread(target=later, daemon=True).start()
            # the main thread stuck in C code that does not return for signals (a driver's call, say)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            held = threading.Lock()
            held.acquire()
            held.acquire()
        print("not reached")
        """
    )
    assert done.returncode == 130, done.stdout + done.stderr
    assert "not reached" not in done.stdout
    assert "Ctrl-C again: quitting at once" in done.stderr


def test_without_a_signal_the_previous_handlers_come_back() -> None:
    done = _child(
        """\
        before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        with handle_signals(token):
            pass
        print(before == (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)), token.requested)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "KeyboardInterrupt"]
