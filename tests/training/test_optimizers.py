"""Row-wise Adagrad: the update rule by hand, sparse and dense gradients, lazy L2 on touched rows only."""

from __future__ import annotations

import math

import pytest
import torch

from shoal.models.embeddings import SparseArch, _sort_ids
from shoal.training import optimizers as optim_module
from shoal.training.optimizers import RowWiseAdagrad


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


def _arch_and_batches(seed: int) -> tuple[SparseArch, list[tuple[list[torch.Tensor], list[torch.Tensor]]]]:
    torch.manual_seed(seed)
    arch = SparseArch([50, 7], dim=3, init_std=0.1)
    batches = []
    for _ in range(4):  # feature 0: 1-4 ids a row with repeats; feature 1: one id a row
        lengths = torch.randint(1, 5, (6,))
        ids0 = torch.randint(0, 50, (int(lengths.sum()),))
        offsets0 = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)[:-1]])
        batches.append(([ids0, torch.randint(0, 7, (6,))], [offsets0, torch.arange(6)]))
    return arch, batches


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "grouped"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_fused_step_equals_the_optimizer_step(weight_decay: float, compiled: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SparseArch.fuse: the update applied inside the backward is the sparse-gradient step, to float rounding,
    whether one compiled loop makes it (numba) or torch ops on the ids grouped by a sort."""
    assert optim_module._pooled_adagrad() is not None  # numba is a dependency: the compiled loop is the default
    if not compiled:
        monkeypatch.setattr(optim_module, "_pooled_adagrad", lambda: None)
    results = []
    for fused in (False, True):
        arch, batches = _arch_and_batches(0)
        opt = RowWiseAdagrad(arch.parameters(), lr=0.2, weight_decay=weight_decay)
        if fused:
            arch.fuse(opt)
        for ids, offsets in batches:
            opt.zero_grad(set_to_none=True)
            (arch(ids, offsets) ** 2).sum().backward()
            assert (arch.bag.weight.grad is None) == fused
            opt.step()
        results.append((arch.bag.weight.detach().clone(), opt.state[arch.bag.weight]["sum"].clone()))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=1e-6)
    assert not torch.equal(results[0][0], _arch_and_batches(0)[0].bag.weight.detach())  # it did train


def test_compiled_step_on_one_id_per_bag_and_empty_bags() -> None:
    """The compiled loop without pooling weights (every bag one id: DLRM's single-id features), and with empty
    bags and a repeated id in one bag, against the optimizer's own step on the sparse gradient."""
    torch.manual_seed(3)
    for lists in ([[4], [2], [4], [9]], [[1, 1, 5], [], [5], [], [0, 9, 9, 9]]):
        lengths = torch.tensor([len(x) for x in lists])
        ids = torch.tensor([i for x in lists for i in x], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)[:-1]])
        got = []
        for fused in (False, True):
            torch.manual_seed(0)
            arch = SparseArch([10], dim=4, init_std=0.1)
            opt = RowWiseAdagrad(arch.parameters(), lr=0.3, weight_decay=0.1)
            if fused:
                arch.fuse(opt)
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                (arch([ids], [offsets]) ** 2).sum().backward()
                opt.step()
            got.append(arch.bag.weight.detach().clone())
        torch.testing.assert_close(got[1], got[0], rtol=0, atol=1e-6)
        assert (arch._scratch.slots == -1).all() and len(arch._scratch.slots) == 10  # the scratch is left clean


def test_fused_step_with_two_forwards_before_the_backward() -> None:
    """A second forward before the backward: each fused update starts from the rows as they are then, so none is
    lost. The loss is linear in the rows, so the result is that of the two steps one after the other (in the
    order autograd ran them: Adagrad's steps do not commute)."""
    def train(order: str) -> torch.Tensor:
        arch, batches = _arch_and_batches(1)
        opt = RowWiseAdagrad(arch.parameters(), lr=0.2)
        arch.fuse(opt)
        scale = {"a": 1.0, "b": 2.0}
        step = {"a": batches[0], "b": batches[1]}
        if order == "together":
            (sum(scale[k] * arch(*step[k]).sum() for k in "ab")).backward()
        else:
            for k in order:
                (scale[k] * arch(*step[k]).sum()).backward()
        return arch.bag.weight.detach().clone()

    together, a_then_b, b_then_a = train("together"), train("ab"), train("ba")
    assert not torch.allclose(a_then_b, b_then_a)  # shared rows: the test can tell a lost update
    assert torch.allclose(together, a_then_b, atol=1e-6) or torch.allclose(together, b_then_a, atol=1e-6)


@pytest.mark.parametrize("num_rows", [1000, 1 << 50])  # packed numpy sort; torch.sort when ids need > 43 bits
def test_sort_ids_groups_ids_stably(num_rows: int) -> None:
    ids = torch.randint(0, 1000, (5000,))
    sorted_ids, order = _sort_ids(ids, num_rows)
    want_ids, want_order = torch.sort(ids, stable=True)
    assert torch.equal(sorted_ids, want_ids) and torch.equal(order, want_order)
    assert torch.equal(_sort_ids(ids.int(), num_rows)[1], want_order)  # int32 ids: the torch path
