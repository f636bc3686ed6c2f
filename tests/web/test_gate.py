"""The work gate serves waiting requests in arrival order and never leaks a permit."""

from __future__ import annotations

import threading
import time

import pytest

from web.gate import FairGate


def _wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiters_are_served_in_arrival_order_even_against_newcomers():
    gate = FairGate(1)
    assert gate.acquire(timeout=1)
    served: list[int] = []
    lock = threading.Lock()

    def request(n: int) -> None:
        assert gate.acquire(timeout=10)
        with lock:
            served.append(n)
        gate.release()

    threads = []
    for n in range(8):
        t = threading.Thread(target=request, args=(n,))
        t.start()
        threads.append(t)
        _wait_for(lambda n=n: len(gate._waiters) == n + 1)  # queued in this order
    gate.release()
    # A newcomer arriving while the queue drains must line up behind it, not barge in.
    late = threading.Thread(target=request, args=(99,))
    late.start()
    threads.append(late)
    for t in threads:
        t.join(timeout=10)
    assert served == [*range(8), 99]


def test_at_most_permits_holders_at_once():
    gate = FairGate(2)
    inside = 0
    peak = 0
    lock = threading.Lock()

    def request() -> None:
        nonlocal inside, peak
        for _ in range(30):
            assert gate.acquire(timeout=10)
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.001)  # hold it long enough for the others to pile up
            with lock:
                inside -= 1
            gate.release()

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert peak == 2 and inside == 0
    assert gate.acquire(timeout=0.1) and gate.acquire(timeout=0.1)
    assert not gate.acquire(timeout=0.05)


def test_a_waiter_that_times_out_leaves_no_permit_behind():
    gate = FairGate(1)
    assert gate.acquire(timeout=1)
    assert not gate.acquire(timeout=0.05)
    assert list(gate._waiters) == []
    gate.release()
    assert gate.acquire(timeout=0.1)
    assert not gate.acquire(timeout=0.05)  # still exactly one permit


def test_a_gate_needs_a_permit():
    with pytest.raises(ValueError):
        FairGate(0)
