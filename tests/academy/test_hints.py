"""Every check of every lab has step-by-step hints: the first the idea, in words; none empty or given twice."""

from __future__ import annotations

import importlib.util

import pytest

from shoal.academy.grader import checks_of

LABS = range(1, 7)


@pytest.mark.parametrize("number", LABS)
def test_every_check_has_hints(number: int) -> None:
    checks = checks_of(number)
    if number == 6 and importlib.util.find_spec("gymnasium") is None:  # its check.py imports only torch at the top
        pytest.skip("lab 6 needs the academy extra (gymnasium)")
    missing = [c.name for c in checks if not c.hints]
    assert not missing, f"lab {number}: checks without hints: {missing}"
    for c in checks:
        assert len(c.hints[0].split()) >= 8, f"lab {number} {c.name!r}: the first hint should say the idea"
        assert all(h.strip() for h in c.hints), f"lab {number} {c.name!r}: an empty hint"
        assert len(set(c.hints)) == len(c.hints), f"lab {number} {c.name!r}: a hint given twice"
