"""A realistic synthetic click log with a known ground truth.

:func:`generate` writes a Criteo-like log (``label``, dense counts ``d0..``, string ids ``s0..``) to Parquet
together with a small JSON file holding the *Bayes* metrics: the AUC, log loss and normalized entropy (NE)
that the true click probabilities achieve on the sampled labels.  No model can do better in expectation, so
these numbers tell how much of the learnable signal a trained model has captured.

The package, in the order the generator uses it:

* :mod:`.spec`: :class:`SynthSpec` (what to generate, validated) and the random streams its seed feeds;
* :mod:`.params`: the model parameters drawn once from the seed (:func:`cardinalities`);
* :mod:`.ids`: stable hashes of ``(feature, rank)``: an id's string code and its effect;
* :mod:`.sampling`: the rows of a chunk, as id ranks and dense counts;
* :mod:`.logit`: the true click logit and the bias calibrated to ``base_rate``;
* :mod:`.tasks`: further tasks (``SynthSpec.tasks``), post-click events such as a conversion;
* :mod:`.arrow`: a chunk as an Arrow table (ids as strings);
* :mod:`.truth`: :class:`SynthTruth`, its JSON file (:func:`truth_path`, :func:`load_truth`);
* :mod:`.generator`: :func:`generate`, which ties them together.

Generative model (everything is vectorized numpy; each chunk of rows is drawn from its own seeded stream)
-------------------------------------------------------------------------------------------------------

*Model parameters* are drawn once from ``seed``:

* sparse feature ``j`` gets a cardinality ``c_j``; the values ``logspace(min(10, max_cardinality),
  max_cardinality, sparse)`` are assigned to the features in a seeded random order;
* a random ~60% of the sparse features (always including ``s0``) are *informative*, with an effect scale
  ``sigma_j ~ U(0.2, 0.55)``; the others are pure noise;
* dense feature ``k`` gets a log-mean ``m_k ~ U(-0.5, 4)`` (``m_0 = 2`` so that the interaction below has
  the same size whatever the seed), a loading ``a_k ~ U(0.2, 1)`` on a shared latent, a noise scale
  ``b_k ~ U(0.3, 0.8)`` and a logit weight ``w_k ~ N(0, 0.12^2)``.

*Rows*.  For every row:

* a latent ``z ~ N(0, 1)`` makes the dense features correlated:
  ``d_k ~ Poisson(exp(m_k + a_k z + b_k e_k))`` with ``e_k ~ N(0, 1)``, an over-dispersed count;
* the id of sparse feature ``j`` has a rank ``r`` drawn from a bounded Zipf law over ``1..c_j`` with
  exponent ``zipf_exponent``, sampled in O(1) by the inverse CDF of a continuous power law on
  ``[1, c_j + 1)`` and floored (no probability table, so ``c_j = 10^7`` costs nothing).  The last sparse
  feature is a *list*: 1..5 ranks are drawn, duplicates dropped, and the cell is the ``"|"``-joined ids;
* ~5% of dense values and ~3% of sparse cells are null.

The id string is ``"s{j}_" + 6 hex digits`` of a bijective 24-bit mix of the rank (multiply by odd
constants and xor-shift, modulo ``2^24 > 10^7``), so ids are unique per feature but their order says
nothing about their popularity.

*Click probability*.  With ``L(x) = log1p(x)``, a missing value counting as 0 (so the true probability is a
function of what is observed, and is therefore the Bayes-optimal predictor)::

    logit = bias
          + sum_k w_k L(d_k)                                   # dense main effects
          + sum_{j informative} E_j(r_j)                       # per-id effects (mean over the list cell)
          + L(d_0) * C(r_0)                                    # planted dense x sparse interaction
          + [r_1 <= 32 and r_2 <= 32] * P(r_1, r_2)            # planted sparse x sparse interaction

* ``E_j(r) = sigma_j * g(j, r) / sqrt(1 + (r - 1) / 20)`` where ``g`` is a standard normal derived from a
  stable 64-bit hash (SplitMix64) of ``(j, r)``: an id's effect is a deterministic function of its rank,
  so a table of 10M effects is never stored.  Popular ids carry most of the signal, rare ids little;
* ``C(r) = 0.3 * g(dense-x-sparse, r) / sqrt(1 + (r - 1) / 20)`` is a per-id *slope* on ``log1p(d0)``
  (absent when ``dense == 0``);
* ``P(r_1, r_2) = 0.8 * g(hash of the pair)`` is an effect of the *pair* of the 32 most popular ids of
  ``s1`` and ``s2`` that is unrelated to their own effects, so only a model with feature crosses,
  embedding products or deep layers can capture it.

``bias`` is found by bisection on a pilot sample (65,536 rows from a dedicated stream of the same seed) so
that the mean probability there equals ``base_rate``; labels are ``Bernoulli(sigmoid(logit))``.

*Truth*: ``bayes_auc`` is ``roc_auc_score(labels, p)`` over all rows, ``bayes_logloss`` the mean log loss of
``p`` and ``bayes_ne = bayes_logloss / H(q)`` with ``q`` the observed positive rate and
``H(q) = -(q ln q + (1 - q) ln(1 - q))``.  With a single class among the labels (tiny ``rows``) the AUC and
the NE are undefined and stored as ``nan`` (``NaN`` in the JSON, as Python's :mod:`json` writes it).

*Tasks*: with ``tasks=("click", "conversion")`` the label column is called ``click`` (same values) and a second
int8 column ``conversion`` follows it: a post-click event, 1 only where ``click`` is 1, whose logit shares the
click's planted effects and adds its own (:mod:`.tasks`); the truth has each task's Bayes AUC and NE.

Determinism: the same :class:`SynthSpec` gives byte-identical data.  Chunk ``i`` uses the stream
``default_rng([seed, 1, i])``, so ``chunk_rows`` is part of what defines the data.
"""

from __future__ import annotations

# Besides the public API (``__all__``), two groups are re-exported with the ``name as name`` form so that every
# name the single module ``synthetic.py`` once had is still found here: its limits and rates (``PILOT_ROWS``,
# ``DENSE_NULL_RATE``, ...), and the ``_``-prefixed internals that tests/data/test_synthetic.py reaches as
# ``synthetic._name``.
from shoal.data.synthetic.generator import generate
from shoal.data.synthetic.ids import _id_codes as _id_codes
from shoal.data.synthetic.logit import PILOT_ROWS as PILOT_ROWS
from shoal.data.synthetic.logit import _bias as _bias
from shoal.data.synthetic.logit import _calibrate_bias as _calibrate_bias
from shoal.data.synthetic.logit import _logit as _logit
from shoal.data.synthetic.logit import _sigmoid as _sigmoid
from shoal.data.synthetic.params import _params as _params
from shoal.data.synthetic.params import cardinalities
from shoal.data.synthetic.sampling import DENSE_NULL_RATE as DENSE_NULL_RATE
from shoal.data.synthetic.sampling import LIST_MAX_IDS as LIST_MAX_IDS
from shoal.data.synthetic.sampling import SPARSE_NULL_RATE as SPARSE_NULL_RATE
from shoal.data.synthetic.sampling import _sample as _sample
from shoal.data.synthetic.sampling import _zipf_ranks as _zipf_ranks
from shoal.data.synthetic.spec import MAX_CARDINALITY_CAP as MAX_CARDINALITY_CAP
from shoal.data.synthetic.spec import MAX_CHUNK_ROWS as MAX_CHUNK_ROWS
from shoal.data.synthetic.spec import SynthSpec
from shoal.data.synthetic.truth import SynthTruth, TaskTruth, load_truth, truth_path

__all__ = ["SynthSpec", "SynthTruth", "TaskTruth", "cardinalities", "generate", "load_truth", "truth_path"]
