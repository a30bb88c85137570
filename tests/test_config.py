"""Config loading: unknown keys fail; errors name the file, the field, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shoal.cli.demo import synthetic_config
from shoal.config import (
    ConfigError,
    DenseFeature,
    FeatureConfig,
    RunConfig,
    SparseFeature,
    TextFeature,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {
    "data": {"train": "train.csv"},
    "label": {"column": "y"},
    "features": [{"name": "x", "kind": "dense"}, {"name": "c", "kind": "sparse", "buckets": 100}],
    "model": {"name": "dlrm"},
}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_minimal_config_gets_defaults_and_resolves_paths(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert cfg.data.train == (tmp_path / "train.csv").resolve()
    assert cfg.train.epochs == 2 and cfg.data.valid_fraction == 0.1
    assert [f.name for f in cfg.dense] == ["x"] and [f.buckets for f in cfg.sparse] == [100]
    assert cfg.resolved()["model"]["name"] == "dlrm"


def test_unknown_key_names_file_field_and_allowed_keys(tmp_path: Path) -> None:
    bad = {**MINIMAL, "train": {"epochs": 1, "learning_rate": 0.1}}
    path = _write(tmp_path, bad)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "train.learning_rate: unknown key 'learning_rate'" in msg
    assert "allowed keys:" in msg and "embedding_lr" in msg and "lr" in msg


def test_unknown_key_inside_model_lists_that_models_keys(tmp_path: Path) -> None:
    bad = {**MINIMAL, "model": {"name": "mlp", "bottom_mlp": [8]}}
    with pytest.raises(ConfigError, match=r"model\.mlp\.bottom_mlp: unknown key 'bottom_mlp'; allowed keys: "
                                          r"embedding_dim, hidden, name"):
        load_config(_write(tmp_path, bad))


def test_bad_value_shows_value_and_allowed(tmp_path: Path) -> None:
    bad = {**MINIMAL, "features": [{"name": "x", "kind": "categorical"}]}
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, bad))
    msg = str(err.value)
    assert "features.0.kind" in msg and "'categorical'" in msg
    assert "'dense', 'sparse', 'text', 'image', 'audio' or 'time'" in msg


def test_bad_model_name_lists_models(tmp_path: Path) -> None:
    bad = {**MINIMAL, "model": {"name": "xgboost"}}
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, bad))
    assert "model" in str(err.value) and "'dlrm', 'logistic', 'mlp'" in str(err.value)


def test_out_of_range_number(tmp_path: Path) -> None:
    bad = {**MINIMAL, "data": {"train": "t.csv", "valid_fraction": 1.5}}
    with pytest.raises(ConfigError, match=r"data\.valid_fraction: Input should be less than 1 \(got 1\.5\)"):
        load_config(_write(tmp_path, bad))


def test_missing_required_field(tmp_path: Path) -> None:
    bad = {k: v for k, v in MINIMAL.items() if k != "label"}
    with pytest.raises(ConfigError, match=r"label: required field is missing"):
        load_config(_write(tmp_path, bad))


def test_headerless_csv_needs_columns(tmp_path: Path) -> None:
    bad = {**MINIMAL, "data": {"train": "t.csv", "header": False}}
    with pytest.raises(ConfigError, match="data.columns must list the column names"):
        load_config(_write(tmp_path, bad))


def test_duplicate_feature_and_label_as_feature(tmp_path: Path) -> None:
    dup = {**MINIMAL, "features": [{"name": "x", "kind": "dense"}, {"name": "x", "kind": "sparse"}]}
    with pytest.raises(ConfigError, match="feature name 'x' is used twice"):
        load_config(_write(tmp_path, dup))
    lab = {**MINIMAL, "features": [{"name": "y", "kind": "dense"}]}
    with pytest.raises(ConfigError, match="label column 'y' is also listed as a feature"):
        load_config(_write(tmp_path, lab))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("data: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a list", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(p)


@pytest.mark.parametrize("name", ["criteo.yaml", "adult.yaml", "synthetic.yaml", "sst2.yaml"])
def test_ready_configs_load(name: str) -> None:
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.features and cfg.model.name


def test_synthetic_yaml_is_what_the_demo_trains() -> None:
    """configs/synthetic.yaml and shoal.cli.demo.synthetic_config describe the same run."""
    from_yaml = load_config(ROOT / "configs" / "synthetic.yaml")
    in_code = synthetic_config(from_yaml.data.train)
    assert from_yaml.model_dump() == in_code.model_dump()


def test_parse_config_accepts_plain_data() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.data.train == Path("train.csv")


def test_public_api_is_lazy_and_complete() -> None:
    import shoal

    assert set(shoal.__all__) == set(shoal._EXPORTS)
    for name in shoal.__all__:
        assert getattr(shoal, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = shoal.nope


# -- feature kinds: one class per kind ---------------------------------------------------------------------------
def _features(*features: dict) -> dict:
    return {**MINIMAL, "features": list(features)}


def test_each_kind_is_its_own_class_with_its_own_options() -> None:
    cfg = parse_config(_features({"name": "d", "kind": "dense", "bins": 8}, {"name": "s", "kind": "sparse"},
                                 {"name": "t", "kind": "text", "tokens": "bytes"}))
    assert [type(f) for f in cfg.features] == [DenseFeature, SparseFeature, TextFeature]
    assert (cfg.dense, cfg.sparse, cfg.text) == ([cfg.features[0]], [cfg.features[1]], [cfg.features[2]])
    assert [list(f) for f in cfg.resolved()["features"]] == [
        ["name", "kind", "column", "transform", "bins", "decimal", "thousands", "symbol", "not_a_number"],
        ["name", "kind", "column", "buckets", "separator", "encoding", "min_count", "max_size"],
        ["name", "kind", "column", "buckets", "tokens", "max_bytes", "ngram_min", "ngram_max", "word_ngrams"],
    ]
    assert isinstance(FeatureConfig(name="x", kind="text"), TextFeature)


# what a run saved before kinds were classes: every kind's options on every feature, other kinds' at defaults
OLD_SAVED = [
    {"name": "d", "kind": "dense", "column": None, "transform": "log1p", "bins": 8, "buckets": 100000,
     "separator": None, "tokens": "ngrams", "max_bytes": 1024, "ngram_min": 1, "ngram_max": 4, "word_ngrams": 2},
    {"name": "s", "kind": "sparse", "column": "c", "transform": "standardize", "bins": None, "buckets": 500,
     "separator": "|", "tokens": "ngrams", "max_bytes": 1024, "ngram_min": 1, "ngram_max": 4, "word_ngrams": 2},
    {"name": "t", "kind": "text", "column": None, "transform": "standardize", "bins": None, "buckets": 100000,
     "separator": None, "tokens": "bytes", "max_bytes": 64, "ngram_min": 1, "ngram_max": 4, "word_ngrams": 2},
]


def test_a_config_saved_with_every_kinds_options_still_loads() -> None:
    cfg = RunConfig.model_validate({**MINIMAL, "data": {"train": "t.csv"}, "features": OLD_SAVED})
    d, s, t = cfg.features
    assert isinstance(d, DenseFeature) and (d.transform, d.bins) == ("log1p", 8)
    assert isinstance(s, SparseFeature) and (s.source, s.buckets, s.separator) == ("c", 500, "|")
    assert isinstance(t, TextFeature) and (t.tokens, t.max_bytes) == ("bytes", 64)
    added = {"encoding": "hash", "min_count": 1, "max_size": None,  # options newer than the saved file
             "decimal": ".", "thousands": None, "symbol": None, "not_a_number": "bad_row"}
    for old, new in zip(OLD_SAVED, cfg.resolved()["features"], strict=True):
        assert new == {k: old.get(k, added.get(k)) for k in new}  # the same values, other kinds' options left out
    assert parse_config(cfg.resolved()) == cfg


@pytest.mark.parametrize(("feature", "message"), [
    ({"name": "x", "kind": "sparse", "bins": 4},
     "features.0.sparse: Value error, feature 'x': bins applies to dense features only (this one is sparse)"),
    ({"name": "x", "kind": "dense", "tokens": "bytes"},
     "features.0.dense: Value error, feature 'x': tokens applies to text features only (this one is dense)"),
    ({"name": "x", "kind": "dense", "buckets": 10},
     "features.0.dense: Value error, feature 'x': buckets applies to sparse and text features only "
     "(this one is dense)"),
    ({"name": "x", "kind": "text", "separator": "|"},
     "features.0.text: Value error, feature 'x': separator applies to sparse features only (this one is text)"),
    ({"name": "x", "kind": "sparse", "transform": "log1p"},
     "features.0.sparse: Value error, feature 'x': transform applies to dense features only (this one is sparse)"),
])
def test_an_option_of_another_kind_names_the_kind_it_applies_to(feature: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_features(feature), source="run.yaml")
    assert f"  - {message} (got {feature!r})" in str(err.value).splitlines()


def test_feature_errors_name_the_field_value_and_choices() -> None:
    def problem(*features: dict) -> str:
        with pytest.raises(ConfigError) as err:
            parse_config(_features(*features), source="run.yaml")
        lines = str(err.value).splitlines()
        assert lines[0] == "run.yaml: invalid config (1 problem)"
        return lines[1]

    assert problem({"name": "x", "kind": "dense", "bin": 3}) == (
        "  - features.0.dense.bin: unknown key 'bin'; allowed keys: bins, column, decimal, kind, name, not_a_number, "
        "symbol, thousands, transform")
    assert problem({"name": "x"}) == "  - features.0.kind: required field is missing"
    assert problem({"name": "x", "kind": "sparse", "buckets": 1}) == (
        "  - features.0.sparse.buckets: Input should be greater than or equal to 2 (got 1)")
    assert problem({"name": "x", "kind": "dense", "transform": "sqrt"}) == (
        "  - features.0.dense.transform: Input should be 'log1p', 'standardize' or 'none' (got 'sqrt')")
    assert problem({"name": "x", "kind": "text", "ngram_min": 5, "ngram_max": 2}).startswith(
        "  - features.0.text: Value error, feature 'x': ngram_min 5 > ngram_max 2")


def test_model_name_errors_name_the_field_and_choices() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "model": {"name": "xgboost"}})
    expected = "  - model.name: Input should be 'dlrm', 'logistic', 'mlp', 'bag', 'bytecnn' or 'dcn_v2' (got 'xgboost')"
    assert expected in str(err.value).splitlines()
    with pytest.raises(ConfigError, match=r"model\.name: required field is missing"):
        parse_config({**MINIMAL, "model": {"embedding_dim": 8}})
