"""Row-wise Adagrad: the update rule by hand, sparse and dense gradients, lazy L2 on touched rows only."""

from __future__ import annotations

import math

import pytest
import torch

from shoal.optim import RowWiseAdagrad


def test_update_matches_the_formula_on_touched_rows_only() -> None:
    w = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    opt = RowWiseAdagrad([w], lr=0.1, eps=0.0)
    # a sparse gradient on rows 0 and 2, row 0 listed twice (must be summed)
    w.grad = torch.sparse_coo_tensor(torch.tensor([[0, 2, 0]]), torch.tensor([[1.0, 1.0], [3.0, 4.0], [1.0, 1.0]]),
                                     (3, 2), check_invariants=True)
    opt.step()
    # row 0: g = (2, 2), G = mean(4, 4) = 4, step = 0.1 * g / 2 = (0.1, 0.1)
    # row 2: g = (3, 4), G = mean(9, 16) = 12.5, step = 0.1 * g / sqrt(12.5)
    s = 0.1 / math.sqrt(12.5)
    expected = torch.tensor([[0.9, 1.9], [3.0, 4.0], [5.0 - 3 * s, 6.0 - 4 * s]])
    torch.testing.assert_close(w.detach(), expected)
    torch.testing.assert_close(opt.state[w]["sum"], torch.tensor([4.0, 0.0, 12.5]))


def test_accumulator_shrinks_later_steps() -> None:
    w = torch.nn.Parameter(torch.zeros(1, 1))
    opt = RowWiseAdagrad([w], lr=1.0, eps=0.0)
    steps = []
    for _ in range(3):
        before = w.detach().clone()
        w.grad = torch.ones(1, 1)
        opt.step()
        steps.append(float(before - w.detach()))
    assert steps == pytest.approx([1.0, 1 / math.sqrt(2), 1 / math.sqrt(3)])


def test_weight_decay_is_lazy() -> None:
    w = torch.nn.Parameter(torch.ones(2, 1))
    opt = RowWiseAdagrad([w], lr=0.5, eps=0.0, weight_decay=1.0)
    w.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.tensor([[0.0]]), (2, 1), check_invariants=True)
    opt.step()
    assert float(w[0].detach()) == 1.0  # untouched row: no decay
    assert float(w[1].detach()) == pytest.approx(0.5)  # g = 0 + 1.0 * 1 -> G = 1 -> w -= 0.5 * 1 / 1


def test_bad_arguments() -> None:
    w = torch.nn.Parameter(torch.ones(2, 1))
    with pytest.raises(ValueError, match="lr must be > 0, not 0"):
        RowWiseAdagrad([w], lr=0)
    with pytest.raises(ValueError, match="weight_decay must be >= 0, not -1"):
        RowWiseAdagrad([w], weight_decay=-1)
