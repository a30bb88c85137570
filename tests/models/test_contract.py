"""One contract test over every registered model: shapes, determinism, gradients, save -> load parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shoal.artifacts.bundle import load_bundle, save_bundle
from shoal.config import parse_config
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.models import available, build

MODEL_PARAMS: dict[str, dict[str, object]] = {"dlrm": {"embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]},
                "mlp": {"embedding_dim": 4, "hidden": [8]}, "logistic": {}, "bag": {"embedding_dim": 4},
                "bytecnn": {"embedding_dim": 4, "channels": [6, 5], "kernel_size": 3, "hidden": [8]},
                "dcn_v2": {"embedding_dim": 4, "cross_layers": 2, "low_rank": 3, "hidden": [8]}}
BUCKETS = [50, 20, 30, 257]  # u, v, tags, and the bytes of "text" (a sequence input)
SEQUENCES = [3]


def _config(name: str):  # noqa: ANN202
    return parse_config({
        "data": {"train": "unused.csv"},
        "label": {"column": "y"},
        "features": [
            {"name": "a", "kind": "dense"}, {"name": "b", "kind": "dense", "transform": "log1p"},
            {"name": "u", "kind": "sparse", "buckets": 50}, {"name": "v", "kind": "sparse", "buckets": 20},
            {"name": "tags", "kind": "sparse", "buckets": 30, "separator": "|"},
            {"name": "text", "kind": "text", "tokens": "bytes", "max_bytes": 20},
        ],
        "model": {"name": name, **MODEL_PARAMS.get(name, {})},
    })


def _batch(rows: int, seed: int = 0, classes: int = 2) -> Batch:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 4, rows)  # the list feature: 1..3 ids per row
    text_lengths = rng.integers(1, 21, rows)  # bytes of each text (an empty text is the single id 0)
    offsets = [np.arange(rows + 1, dtype=np.int64), np.arange(rows + 1, dtype=np.int64),
               np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
               np.concatenate([[0], np.cumsum(text_lengths)]).astype(np.int64)]
    ids = [rng.integers(0, 50, rows), rng.integers(0, 20, rows), rng.integers(0, 30, int(lengths.sum())),
           rng.integers(1, 257, int(text_lengths.sum()))]
    return Batch(dense=rng.normal(size=(rows, 4)).astype(np.float32), ids=[i.astype(np.int64) for i in ids],
                 offsets=offsets, label=rng.integers(0, classes, rows).astype(np.float32),
                 lines=np.arange(1, rows + 1))


def test_every_model_is_covered() -> None:  # a new model must join this contract
    assert set(available()) == set(MODEL_PARAMS), "add the new model's parameters to MODEL_PARAMS"


@pytest.fixture(params=sorted(MODEL_PARAMS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _model(name: str, seed: int = 0, outputs: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = _config(name)
    return build(cfg.model, dense_dim=4, buckets=BUCKETS, outputs=outputs, sequences=SEQUENCES)


@pytest.mark.parametrize("rows", [1, 7, 64])
@pytest.mark.parametrize("outputs", [1, 3])
def test_output_shape_and_finite(name: str, rows: int, outputs: int) -> None:
    out = _model(name, outputs=outputs)(*_batch(rows).inputs())
    assert out.shape == ((rows,) if outputs == 1 else (rows, outputs))
    assert torch.isfinite(out).all()


def test_a_row_does_not_depend_on_its_batch(name: str) -> None:
    """Scoring rows one at a time equals scoring them together (padding, pooling and batching are exact)."""
    model = _model(name, outputs=3).eval()
    batch = _batch(12, seed=5)
    with torch.no_grad():
        together = model(*batch.inputs())
        alone = torch.cat([model(*batch.take(np.array([i])).inputs()) for i in range(len(batch))])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_deterministic_with_seed(name: str) -> None:
    a, b = _model(name, seed=3), _model(name, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    batch = _batch(16)
    a.eval(), b.eval()  # dropout off
    assert torch.equal(a(*batch.inputs()), b(*batch.inputs()))


@pytest.mark.parametrize("outputs", [1, 3])
def test_gradients_reach_every_parameter(name: str, outputs: int) -> None:
    model = _model(name, outputs=outputs)
    batch = _batch(32, classes=max(outputs, 2))
    logits, label = model(*batch.inputs()), torch.from_numpy(batch.label)
    if outputs == 1:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, label)
    else:
        loss = torch.nn.functional.cross_entropy(logits, label.long())
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        g = p.grad.coalesce().values() if p.grad.is_sparse else p.grad
        assert torch.isfinite(g).all(), pname
        assert g.abs().sum() > 0, f"{pname} has an all-zero gradient"


def test_training_path_matches_inference_path(name: str) -> None:
    """The training forward (unique rows, sparse gradient) equals the no-grad forward."""
    model = _model(name)
    with torch.no_grad():
        torch.nn.init.normal_(next(p for n, p in model.named_parameters() if "bag" in n), std=0.1)
    model.eval()  # dropout off; the training path is still taken while gradients are enabled
    batch = _batch(40)
    train_out = model(*batch.inputs())
    with torch.no_grad():
        eval_out = model(*batch.inputs())
    torch.testing.assert_close(train_out.detach(), eval_out, rtol=1e-5, atol=1e-6)


def test_list_features_are_mean_pooled() -> None:
    """A row's list of ids is pooled as the mean of its embeddings (order does not matter)."""
    model = _model("mlp")
    with torch.no_grad():
        torch.nn.init.normal_(model.sparse_arch.bag.weight, std=0.5)
    one = _batch(5).take(np.array([0]))
    ids = [*one.ids[:2], np.array([3, 7, 7], dtype=np.int64), one.ids[3]]
    offsets = [*one.offsets[:2], np.array([0, 3], dtype=np.int64), one.offsets[3]]
    rows = Batch(dense=one.dense, ids=ids, offsets=offsets, label=one.label, lines=one.lines)
    table = model.sparse_arch.bag.weight[50 + 20:]  # the third feature's rows
    with torch.no_grad():
        pooled = model.sparse_arch(*rows.inputs()[1:])[0, 2]  # (dim,)
        torch.testing.assert_close(pooled, (table[3] + 2 * table[7]) / 3)


def test_save_load_bundle_same_outputs(name: str, tmp_path: Path) -> None:
    cfg = _config(name)
    model = _model(name, seed=1)
    encoder = Encoder(cfg.features, cfg.label)
    save_bundle(tmp_path / "bundle", model, encoder, cfg, {"train_base_rate": 0.25})
    loaded = load_bundle(tmp_path / "bundle")
    batch = _batch(33)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(*batch.inputs()), loaded.model(*batch.inputs()), rtol=0, atol=0)
    assert loaded.base_rate == 0.25
    np.testing.assert_allclose(loaded.predict_proba(batch),
                               1 / (1 + np.exp(-model(*batch.inputs()).detach().numpy().astype(np.float64))))


def test_bundle_never_unpickles(tmp_path: Path) -> None:
    """A bundle is safetensors + JSON: no pickle opcodes anywhere in it."""
    cfg = _config("dlrm")
    save_bundle(tmp_path / "b", _model("dlrm"), Encoder(cfg.features, cfg.label), cfg, {"train_base_rate": 0.1})
    files = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert files == ["bundle.json", "model.safetensors"]
    raw = (tmp_path / "b" / "model.safetensors").read_bytes()
    assert not raw.startswith(b"\x80"), "looks like a pickle stream"


def test_unknown_model_name_lists_choices() -> None:
    class Fake:
        name = "transformer"

    with pytest.raises(ValueError,
                       match=r"unknown model 'transformer'; available: bag, bytecnn, dcn_v2, dlrm, logistic, mlp"):
        build(Fake(), 2, [3])


@pytest.mark.parametrize(("task", "outputs", "prior"), [("binary", 1, 0.01), ("multiclass", 3, [0.7, 0.2, 0.1]),
                                                        ("multiclass", 4, [0.4, 0.3, 0.2, 0.1]),  # = embedding_dim
                                                        ("multilabel", 3, [0.5, 0.05, 0.9])])
def test_the_output_bias_starts_at_the_prior(name: str, task: str, outputs: int, prior: object) -> None:
    """init_output_bias sets the bias that adds to the logits one for one (the output layer's), to the prior's
    log-odds (binary, per tag) or log (classes); regression keeps its own."""
    from shoal.models.registry import _output_bias, init_output_bias

    model = _model(name, outputs=outputs).eval()
    inputs = _batch(9, seed=2).inputs()
    bias = _output_bias(model, outputs)
    assert bias is not None
    before, old = model(*inputs).detach(), bias.detach().clone()
    assert init_output_bias(model, task, prior)
    p = np.asarray(prior, dtype=np.float64)
    expected = np.log(p) if task == "multiclass" else np.log(p / (1 - p))
    np.testing.assert_allclose(bias.detach().numpy(), np.atleast_1d(expected), rtol=1e-6)
    shift = (bias.detach() - old).reshape(-1) if outputs > 1 else (bias.detach() - old).reshape(())
    torch.testing.assert_close(model(*inputs).detach(), before + shift, rtol=1e-5, atol=1e-5)
    assert not init_output_bias(_model(name), "regression", 3.0)


@pytest.mark.parametrize("name", [n for n in available() if n != "bytecnn"])  # bytecnn reads a byte sequence
def test_a_model_without_dense_inputs_builds_silently(name: str) -> None:
    """Ids only (a text and an artist, no number): no warning reaches the user's console (DLRM's bottom MLP takes
    0 values: a zero-element first layer, which torch warns about), and the output is finite."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build(_config(name).model, 0, [50, 20], 1, [])
        with torch.device("meta"):  # as a bundle is loaded
            build(_config(name).model, 0, [50, 20], 1, [])
    out = model(torch.zeros(3, 0), [torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])],
                [torch.arange(3), torch.arange(3)])  # one id per row: offsets (B,)
    assert out.shape == (3,) and torch.isfinite(out).all()
