"""The collectives' alpha-beta formulas."""

from __future__ import annotations

import pytest

from shoal.plan.comm import all_gather_s, all_reduce_bytes, all_reduce_s, all_to_all_s


def test_ring_all_reduce() -> None:
    assert all_reduce_bytes(1e6, 4) == pytest.approx(1.5e6)  # 2 (W - 1) / W
    assert all_reduce_s(1e6, 4, bandwidth=1e9, latency=1e-5) == pytest.approx(1.5e6 / 1e9 + 6 * 1e-5)
    assert all_reduce_s(1e6, 1, 1e9, 1e-5) == 0.0
    # large W: each process moves about twice the buffer, whatever W
    assert all_reduce_bytes(1e6, 1000) == pytest.approx(2e6, rel=1e-2)


def test_all_gather_and_all_to_all() -> None:
    assert all_gather_s(1e6, 4, 1e9, 1e-5) == pytest.approx(3e6 / 1e9 + 3e-5)
    assert all_to_all_s(1e6, 4, 1e9, 1e-5) == pytest.approx(0.75e6 / 1e9 + 3e-5)
    assert all_gather_s(1e6, 1, 1e9, 1e-5) == all_to_all_s(1e6, 1, 1e9, 1e-5) == 0.0
