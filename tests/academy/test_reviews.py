"""Lab 3's reviews: the grader's grammar writes the lab's reviews, and the order-blind ceiling is the lesson's."""

from __future__ import annotations

import importlib.util

import pytest

from shoal.academy.grader import get_lab
from shoal.academy.reviews import ORDER_BLIND_CEILING, draw_reviews, order_blind_ceiling, order_probes, reviews


def test_the_grader_generates_the_labs_reviews() -> None:
    spec = importlib.util.spec_from_file_location("shoal_test_lab3_solution", get_lab(3).solution)
    assert spec is not None and spec.loader is not None
    solution = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solution)
    for seed in (0, 1, 7):
        assert reviews(200, seed) == solution.make_reviews(200, seed)
    texts, labels = solution.make_reviews(1000, 0)
    assert 0.35 < sum(labels) / len(labels) < 0.65 and any(not t.isascii() for t in texts)
    rows = draw_reviews(5000, 0)
    assert [r.text for r in rows[:1000]] == texts and 0.45 < sum(r.far for r in rows) / len(rows) < 0.55
    sizes = [len(r.text.encode()) for r in rows]
    assert min(sizes) >= 43 and max(sizes) <= 168  # the README's range; the grader's MAX_LEN of 256 cuts nothing
    assert "43 to 168 bytes" in get_lab(3).readme.read_text(encoding="utf-8")


def test_order_blind_ceiling_is_the_lessons() -> None:
    assert abs(ORDER_BLIND_CEILING - 0.645) < 1e-9
    assert order_blind_ceiling(0.0) == pytest.approx(0.75)  # no negation: right whenever both words agree
    texts, labels = reviews(50, 3)
    swapped, swapped_labels = reviews(50, 3, swapped=True)
    assert [sorted(t.encode()) for t in texts] == [sorted(t.encode()) for t in swapped]  # the same bag of bytes
    assert labels != swapped_labels
    assert "64.5 %" in get_lab(3).readme.read_text(encoding="utf-8")


def test_order_probes_swap_the_clauses() -> None:
    texts, swapped = order_probes()
    assert 150 < len(texts) == len(swapped) <= 200 and texts != swapped
    assert [sorted(t.encode()) for t in texts] == [sorted(t.encode()) for t in swapped]
    assert all(t.count(" but ") == 1 for t in texts)
