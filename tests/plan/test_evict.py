"""A part timed alone is timed after the rest of a step's bytes are walked: the walk is capped, and untimed."""

from __future__ import annotations

import time

from shoal.plan.calibrate import MAX_EVICT_LLC, call_seconds, evictor, mean_seconds


def test_evictor_walks_the_bytes_up_to_a_few_caches() -> None:
    assert evictor(32 << 10, llc_bytes=1 << 20) is None  # under 64 KiB: nothing worth walking
    walk = evictor(256 << 10, llc_bytes=1 << 20)
    assert walk is not None
    walk()
    assert walk.buffer.nbytes == 256 << 10 and bool((walk.buffer == 1.0).all())  # every byte read and written
    capped = evictor(1 << 30, llc_bytes=1 << 20)
    assert capped is not None and capped.buffer.nbytes == MAX_EVICT_LLC << 20


def test_what_runs_before_each_call_is_not_timed() -> None:
    before, calls = [], []

    def slow() -> None:
        before.append(len(calls))
        time.sleep(0.05)

    times = call_seconds(lambda: calls.append(1), seconds=0.0, warmup=1, min_calls=5, before=slow)
    assert len(times) == 5 and max(times) < 0.025  # the 50 ms before each call is outside its time
    assert before == [1, 2, 3, 4, 5]  # once before each timed call (after the warm-up's one)
    assert 0.005 <= mean_seconds(lambda: time.sleep(0.005), seconds=0.0, warmup=0, min_calls=3, before=slow) < 0.03
