"""Configs that cannot train are refused before anything runs (issue 23 item 9): a size of 0 or less anywhere,
embedding tables bigger than the machine's memory, a YAML alias bomb. Each refusal names the field (or the
file) and the value."""

from __future__ import annotations

import copy
import time
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from annotated_types import Ge
from pydantic import BaseModel

import shoal.config as config_module
from shoal.config import (
    MAX_YAML_ALIASES,
    BagConfig,
    ByteCNNConfig,
    ConfigError,
    DataConfig,
    DCNv2Config,
    DenseFeature,
    DLRMConfig,
    EmbeddingsConfig,
    LabelConfig,
    LogisticConfig,
    MLPConfig,
    SparseFeature,
    TextFeature,
    TrainConfig,
    apply_overrides,
    check_memory,
    load_config,
    machine_memory,
    parse_config,
    read_yaml,
)

ROOT = Path(__file__).resolve().parents[1]
GB = 10**9

BASE: dict[str, Any] = {
    "data": {"train": "train.csv"},
    "label": {"column": "y"},
    "features": [{"name": "x", "kind": "dense", "bins": 8}, {"name": "c", "kind": "sparse", "buckets": 100},
                 {"name": "t", "kind": "text", "buckets": 100}],
    "model": {"name": "mlp"},
}


def _with(path: str, value: Any, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE (with ``model``) and ``path`` (dots; list items by index) set to ``value``."""
    data = copy.deepcopy(BASE)
    if model is not None:
        data["model"] = model
    if model is not None and model["name"] == "bytecnn":
        data["features"][2]["tokens"] = "bytes"
    return apply_overrides(data, {path: value})


def _too_big(data: Any, source: str = "test.yaml") -> str:
    with pytest.raises(ConfigError) as err:
        check_memory(parse_config(data, source=source), source)
    return str(err.value)


def _refused(data: Any, source: str = "test.yaml") -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data, source=source)
    return str(err.value)


# -- 1. sizes of 0 or less -----------------------------------------------------------------------------------
DLRM = {"name": "dlrm"}
MLP = {"name": "mlp"}
BYTECNN = {"name": "bytecnn"}
DCN = {"name": "dcn_v2"}
SIZES = [
    # (path to set, value, model, the field path in the message, the bound)
    ("model.hidden", [0], MLP, "model.mlp.hidden.0", 1),
    ("model.hidden", [64, -3], MLP, "model.mlp.hidden.1", 1),
    ("model.embedding_dim", 0, MLP, "model.mlp.embedding_dim", 1),
    ("model.embedding_dim", -16, {"name": "bag"}, "model.bag.embedding_dim", 1),
    ("model.bottom_mlp", [0, 8], DLRM, "model.dlrm.bottom_mlp.0", 1),
    ("model.top_mlp", [8, 0], DLRM, "model.dlrm.top_mlp.1", 1),
    ("model.channels", [16, 0], BYTECNN, "model.bytecnn.channels.1", 1),
    ("model.hidden", [-1], BYTECNN, "model.bytecnn.hidden.0", 1),
    ("model.kernel_size", 0, BYTECNN, "model.bytecnn.kernel_size", 1),
    ("model.pool", 0, BYTECNN, "model.bytecnn.pool", 1),
    ("model.hidden", [0], DCN, "model.dcn_v2.hidden.0", 1),
    ("model.cross_layers", 0, DCN, "model.dcn_v2.cross_layers", 1),
    ("model.low_rank", 0, DCN, "model.dcn_v2.low_rank", 1),
    ("features.c.buckets", 0, None, "features.1.sparse.buckets", 2),
    ("features.t.buckets", -5, None, "features.2.text.buckets", 2),
    ("features.t.max_bytes", 0, None, "features.2.text.max_bytes", 1),
    ("features.t.ngram_min", 0, None, "features.2.text.ngram_min", 1),
    ("features.t.ngram_max", -1, None, "features.2.text.ngram_max", 1),
    ("features.t.word_ngrams", -1, None, "features.2.text.word_ngrams", 0),
    ("features.x.bins", 0, None, "features.0.dense.bins", 2),
    ("data.chunk_rows", 0, None, "data.chunk_rows", 1),
    ("train.epochs", 0, None, "train.epochs", 1),
    ("train.batch_size", 0, None, "train.batch_size", 1),
    ("train.batch_size", -1024, None, "train.batch_size", 1),
    ("train.checkpoint_every", 0, None, "train.checkpoint_every", 1),
    ("train.early_stopping_patience", 0, None, "train.early_stopping_patience", 1),
    ("train.eval_every", 0, None, "train.eval_every", 1),
    ("train.threads", 0, None, "train.threads", 1),
    ("train.cache_mb", -1, None, "train.cache_mb", 0),
    ("train.seed", -1, None, "train.seed", 0),
]


@pytest.mark.parametrize(("path", "value", "model", "field", "bound"), SIZES,
                         ids=[f"{s[3]}={s[1]}" for s in SIZES])
def test_a_size_of_zero_or_less_is_refused_naming_field_and_value(path: str, value: Any, model: dict[str, Any] | None,
                                                                  field: str, bound: int) -> None:
    msg = _refused(_with(path, value, model))
    bad = value[[v < bound for v in value].index(True)] if isinstance(value, list) else value
    assert msg.startswith("test.yaml: invalid config (1 problem)\n")
    assert f"  - {field}: Input should be greater than or equal to {bound} (got {bad})" in msg


def test_a_layer_wider_than_the_cap_is_refused() -> None:
    msg = _refused(_with("model.hidden", [10**9], MLP))
    assert "  - model.mlp.hidden.0: Input should be less than or equal to 65536 (got 1000000000)" in msg


def test_a_seed_torch_cannot_take_is_refused() -> None:
    assert "  - train.seed: Input should be less than or equal to 9223372036854775807" in _refused(
        _with("train.seed", 2**64))


def test_sizes_of_one_are_fine() -> None:
    cfg = parse_config(_with("model.hidden", [1], MLP) | {"train": {"epochs": 1, "batch_size": 1, "threads": 1}})
    assert cfg.model.hidden == [1] and cfg.train.batch_size == 1  # type: ignore[union-attr]


CONFIGS: list[type[BaseModel]] = [DataConfig, LabelConfig, DenseFeature, SparseFeature, TextFeature, DLRMConfig,
                                  LogisticConfig, MLPConfig, BagConfig, ByteCNNConfig, DCNv2Config, EmbeddingsConfig,
                                  TrainConfig]


def _ints(annotation: Any) -> bool:
    return annotation is int or any(_ints(a) for a in typing.get_args(annotation))


VALUES_NOT_SIZES = {("DataConfig", "filter")}  # a filter's values are compared with the data: any number is fine


def test_every_int_of_the_configs_has_a_lower_bound() -> None:
    """A guard for fields added later: every int (an int field, or the items of a list of ints) is bounded below."""
    unbounded = []
    for model in CONFIGS:
        for name, field in model.model_fields.items():
            if not _ints(field.annotation) or (model.__name__, name) in VALUES_NOT_SIZES:
                continue
            metadata = list(field.metadata)
            for arg in typing.get_args(field.annotation):  # list[Width]: the items' own constraints
                metadata += [m for meta in getattr(arg, "__metadata__", ()) for m in getattr(meta, "metadata", ())]
            if not any(isinstance(m, Ge) and m.ge >= 0 for m in metadata):
                unbounded.append(f"{model.__name__}.{name}")
    assert unbounded == []


# -- 2. embedding tables bigger than the machine ----------------------------------------------------------------
def _big(buckets: int = 100_000_000, dim: int = 1024, model: str = "mlp") -> dict[str, Any]:
    return {"data": {"train": "train.csv"}, "label": {"column": "y"},
            "features": [{"name": "d", "kind": "dense"},
                         {"name": "c2", "kind": "sparse", "buckets": 1000},
                         {"name": "c3", "kind": "sparse", "buckets": buckets}],
            "model": {"name": model, "embedding_dim": dim}}


@pytest.fixture
def machine_24gb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "machine_memory", lambda: 24 * GB)


def test_tables_bigger_than_the_machine_are_refused_with_the_figures(machine_24gb: None) -> None:
    # (100,000,000 + 1,000) rows x (1024 values + 1 Adagrad value) x 4 bytes
    assert _too_big(_big(), source="big.yaml") == (
        "big.yaml: embedding tables need 410.0 GB (largest: feature 'c3': 100,000,000 x 1024 float32, + 1 float32 "
        "per row of row-wise Adagrad state); this machine has 24.0 GB of memory; lower the buckets or the "
        "embedding_dim")


def test_a_yaml_config_with_huge_tables_is_refused_before_training(machine_24gb: None, tmp_path: Path) -> None:
    from shoal.training.runs import train

    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(_big(buckets=10_000_000, dim=1024)), encoding="utf-8")
    assert load_config(path).sparse[1].buckets == 10_000_000  # parsing alone never refuses (shoal plan plans it)
    with pytest.raises(ConfigError, match=r"^.*big\.yaml: embedding tables need 41\.0 GB \(largest: feature 'c3': "
                                          r"10,000,000 x 1024 float32, .*this machine has 24\.0 GB of memory"):
        train(path, tmp_path / "home")
    assert not (tmp_path / "home").exists()  # refused before a run was created
    with pytest.raises(ConfigError, match=r"synthetic\.yaml: embedding tables need 51\.2 GB \(largest: feature 's0': "
                                          r"10,000,000 x 1024 float32"):  # the same through --set
        train(ROOT / "configs" / "synthetic.yaml", tmp_path / "home",
              overrides=["features.s0.buckets=10000000", "model.embedding_dim=1024"])


def test_a_sequence_table_counts_adams_state(machine_24gb: None) -> None:
    data = {"data": {"train": "train.csv"}, "label": {"column": "y"},
            "features": [{"name": "text", "kind": "text", "tokens": "bytes", "buckets": 10_000_000}],
            "model": {"name": "bytecnn", "embedding_dim": 256}}
    # 10,000,000 x 256 x 4 bytes x 3 (the weights and Adam's two moments)
    assert "embedding tables need 30.7 GB (largest: feature 'text': 10,000,000 x 256 float32, x3 with Adam state)" \
        in _too_big(data)


def test_tables_that_fit_pass(machine_24gb: None) -> None:
    cfg = parse_config(_big(buckets=1_000_000, dim=1024))  # 4.1 GB
    check_memory(cfg)
    assert cfg.sparse[1].buckets == 1_000_000


def test_logistic_tables_are_one_weight_per_id(machine_24gb: None) -> None:
    data = _big()
    data["model"] = {"name": "logistic"}
    check_memory(parse_config(data))  # 100,001,000 x (1 + 1) x 4 bytes = 0.8 GB


def test_no_check_when_the_memory_is_unknown_or_the_tables_are_sharded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "machine_memory", lambda: None)
    check_memory(parse_config(_big()))
    sharded = {**_big(), "train": {"embeddings": {"backend": "torchrec", "sharding": "row_wise"}}}
    check_memory(parse_config(sharded), memory=24 * GB)  # no error: torchrec spreads the tables over its workers


def test_the_machine_memory_is_known_here() -> None:
    memory = machine_memory()
    assert memory is not None and 10**8 < memory < 10**14


# -- 3. YAML alias bombs ----------------------------------------------------------------------------------------
def _laughs(levels: int = 9, width: int = 9) -> list[str]:
    """The "billion laughs": each level a list of ``width`` aliases of the level before (9 x 9: 9**9 values)."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    return lines + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]


def test_a_billion_laughs_is_refused_fast_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(_laughs()) + "\n" + yaml.safe_dump(BASE), encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert time.perf_counter() - start < 2
    assert str(err.value) == (f"{path}: YAML aliases expand to over 1,000,000 values (from 72 aliases); refused "
                              "(an alias bomb?)")


def test_more_aliases_than_the_limit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    lines = ["one: &one 1"] + [f"k{i}: *one" for i in range(MAX_YAML_ALIASES + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"{path}: more than 100 YAML aliases (*name), one more at line 102; refused "
                              "(an alias bomb?)")


def test_an_alias_inside_its_own_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^x\.yaml: a YAML alias refers to a value that holds it \(line 1\)"):
        read_yaml("a: &a [1, *a]\n", "x.yaml")


def test_a_bomb_in_a_set_value_is_refused() -> None:
    bomb = "{" + ", ".join(_laughs()) + "}"  # one line, as --set takes it
    with pytest.raises(ConfigError, match=r"^--set 'name=\{a0: .*': YAML aliases expand to over 1,000,000 values"):
        apply_overrides(copy.deepcopy(BASE), [f"name={bomb}"])


def test_normal_aliases_still_work(tmp_path: Path) -> None:
    text = ("sparse: &sparse {kind: sparse, buckets: 1000}\n"
            "config:\n  data: {train: t.csv}\n  label: {column: y}\n"
            "  features:\n  - {<<: *sparse, name: a}\n  - {<<: *sparse, name: b}\n  model: {name: mlp}\n")
    doc = read_yaml(text, "ok.yaml")
    assert doc["config"]["features"] == [{"kind": "sparse", "buckets": 1000, "name": "a"},
                                         {"kind": "sparse", "buckets": 1000, "name": "b"}]
    assert read_yaml("", "empty.yaml") is None


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_the_shipped_configs_read_as_before(name: str) -> None:
    text = (ROOT / "configs" / name).read_text(encoding="utf-8")
    assert read_yaml(text, name) == yaml.safe_load(text)
