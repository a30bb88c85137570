"""Forward selection of an ensemble (Caruana et al. 2004) on made-up validation outputs."""

from __future__ import annotations

import numpy as np
import pytest

from shoal.auto.ensemble import forward_select
from shoal.distill.teachers import ensemble_logits
from shoal.metrics import auc


def _auc(y: np.ndarray, z: np.ndarray) -> float:
    return auc(y, 1 / (1 + np.exp(-z)))


def _three_models(rows: int = 4000, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """A label from two signals; model A sees the first well, B is A with a little noise (no new signal), C sees
    the second signal only. A alone is best; A + C is better than any one of them."""
    rng = np.random.default_rng(seed)
    s1, s2 = rng.normal(size=rows), rng.normal(size=rows)
    y = (s1 + 0.8 * s2 + 0.5 * rng.normal(size=rows) > 0).astype(np.float32)
    a = 2 * s1 + 0.3 * rng.normal(size=rows)
    b = a + 0.3 * rng.normal(size=rows)
    c = 2 * s2 + 0.3 * rng.normal(size=rows)
    return y, [a, b, c]


def test_it_starts_from_the_best_and_adds_what_the_metric_rewards() -> None:
    y, outputs = _three_models()
    assert _auc(y, outputs[0]) > max(_auc(y, outputs[1]), _auc(y, outputs[2]))
    chosen = forward_select(y, outputs, ensemble_logits, _auc, maximize=True, k=3)
    assert chosen[0] == 0 and 2 in chosen  # the diverse model joins, not the near copy of the best
    # every addition improved the ensemble: recomputed prefix by prefix
    scores = [_auc(y, ensemble_logits([outputs[i] for i in chosen[:n]])) for n in range(1, len(chosen) + 1)]
    assert all(later > earlier for earlier, later in zip(scores, scores[1:], strict=False))
    # and it stopped because no candidate improves it any more
    assert all(_auc(y, ensemble_logits([outputs[i] for i in chosen + [j]])) <= scores[-1] for j in range(3))
    assert chosen.count(0) >= chosen.count(2)  # A weighs at least as much as C: repeats are weights


def test_k_caps_the_distinct_members_and_rounds_the_additions() -> None:
    y, outputs = _three_models()
    one = forward_select(y, outputs, ensemble_logits, _auc, maximize=True, k=1)
    assert set(one) == {0}  # the best alone: adding itself changes nothing, so nothing is added
    few = forward_select(y, outputs, ensemble_logits, _auc, maximize=True, k=3, rounds=1)
    assert few == [0, 2]


def test_a_metric_to_minimise_and_a_useless_candidate() -> None:
    rng = np.random.default_rng(1)
    y, outputs = _three_models()
    noise = rng.normal(size=len(y)) * 3  # no signal at all

    def logloss(labels: np.ndarray, z: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0, z) - labels * z))

    chosen = forward_select(y, [outputs[0], noise], ensemble_logits, logloss, maximize=False, k=2)
    assert chosen == [0]  # averaging in noise only hurts: the best stands alone
    both = forward_select(y, outputs, ensemble_logits, logloss, maximize=False, k=3)
    assert both[0] == 0 and 2 in both
    assert logloss(y, ensemble_logits([outputs[i] for i in both])) < logloss(y, outputs[0])


@pytest.mark.parametrize("k", [2, 3])
def test_never_more_than_k_distinct(k: int) -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(3000) < 0.3).astype(np.float32)
    outputs = [y * 0.5 + rng.normal(size=3000) for _ in range(6)]  # six equally weak, independent views
    chosen = forward_select(y, outputs, ensemble_logits, _auc, maximize=True, k=k)
    assert len(set(chosen)) <= k and len(chosen) <= 21


def test_a_tie_on_accuracy_is_broken_by_the_log_loss() -> None:
    """Accuracy moves by whole rows: B has A's signs (the same accuracy, alone or averaged in) but is less
    overconfident, so averaging it in lowers the log loss. Only the tiebreak lets it join."""
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.5).astype(np.float32)
    margin = np.where(rng.random(2000) < 0.8, 1.0, -1.0) * (2 * y - 1)  # right on 80 % of the rows
    a = 8 * margin  # overconfident
    b = 0.5 * margin  # the same decisions, tempered

    def accuracy(labels: np.ndarray, z: np.ndarray) -> float:
        return float(np.mean((z > 0) == (labels > 0.5)))

    def logloss(labels: np.ndarray, z: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0, z) - labels * z))

    assert forward_select(y, [a, b], ensemble_logits, accuracy, maximize=True, k=2) == [0]
    chosen = forward_select(y, [a, b], ensemble_logits, accuracy, maximize=True, k=2, tiebreak=logloss)
    assert chosen[:2] == [0, 1]
    assert accuracy(y, ensemble_logits([[a, b][i] for i in chosen])) == accuracy(y, a)
    assert logloss(y, ensemble_logits([[a, b][i] for i in chosen])) < logloss(y, a)
