"""Labs 3 (recurrent networks, byte-level text) and 4 (sparse features and ranking): each reference solution
passes its grader within the time budget, each untouched starter fails with TODO hints, and common mistakes
get the hint meant for them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shoal.academy import CheckResult, check, get_lab, list_labs, start

NEW_LABS = [n for n in (3, 4) if n in {lab.number for lab in list_labs()}]


def _table(results: list[CheckResult]) -> str:
    return "\n".join(f"{r.status:4} {r.name}: {r.message}" for r in results)


def _variant(number: int, tmp_path: Path, old: str, new: str) -> dict[str, str]:
    """Grade the solution with one mistake put in: {check name: message} of the failed checks."""
    source = get_lab(number).solution.read_text(encoding="utf-8")
    assert old in source
    (tmp_path / "lab.py").write_text(source.replace(old, new), encoding="utf-8")
    return {r.name: r.message for r in check(number, tmp_path) if r.status == "fail"}


def test_labs_3_and_4_are_listed() -> None:
    titles = {lab.number: lab.title for lab in list_labs()}
    assert titles.get(4) == "Sparse features and ranking"
    if 3 in titles:
        assert titles[3] == "Recurrent networks and byte-level text"
    for number in NEW_LABS:
        readme = get_lab(number).readme.read_text(encoding="utf-8")
        assert "## What you implement" in readme and f"shoal academy check {number}" in readme


@pytest.mark.parametrize("number", NEW_LABS)
def test_solution_passes_quickly(number: int, tmp_path: Path) -> None:
    started = time.perf_counter()
    results = check(number, solution=True, out_dir=tmp_path)
    assert results and all(r.status == "pass" for r in results), _table(results)
    assert time.perf_counter() - started < 60  # the brief: a solution's full check in under a minute
    assert list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("number", NEW_LABS)
def test_untouched_starter_fails_with_todo_hints(number: int, tmp_path: Path) -> None:
    results = check(number, start(number, tmp_path / "ws"))
    assert results and all(r.status == "fail" for r in results), _table(results)
    for r in results:
        assert "Traceback" not in r.message and "\n" not in r.message
        assert (r.message.startswith("TODO") and "lab.py line" in r.message) or r.message.startswith("not run: needs")
    assert results[0].message.startswith("TODO") and "lab.py line" in results[0].message


def test_lab4_starter_hints_name_the_function_to_write(tmp_path: Path) -> None:
    results = {r.name: r.message for r in check(4, start(4, tmp_path / "ws"))}
    assert "in hash_bucket" in results["hashing ids into buckets"]
    assert "in embedding_bag_mean" in results["embedding bag (mean) matches nn.EmbeddingBag"]
    assert "in normalized_entropy" in results["metrics by hand: NE and calibration match shoal.metrics"]
    assert "parse_config" in results["shoal's DLRM: make_config"]
    assert results["train with shoal.train: valid AUC >= 0.68, NE < 1"] == \
        "not run: needs \"shoal's DLRM: make_config\" to pass first"


def test_lab4_hints_for_common_mistakes(tmp_path: Path) -> None:
    failed = _variant(4, tmp_path, 'return zlib.crc32(value.encode("utf-8")) % buckets', "return hash(value) % buckets")
    assert "salted per process" in failed["hashing ids into buckets"]

    failed = _variant(4, tmp_path, "return sums / lengths.clamp_min(1).unsqueeze(1).to(weight.dtype)",
                      "return sums")
    assert "sums of their rows" in failed["embedding bag (mean) matches nn.EmbeddingBag"]

    failed = _variant(4, tmp_path, "return float(np.mean(p) / np.mean(y))", "return float(np.mean(y) / np.mean(p))")
    assert "upside down" in failed["metrics by hand: NE and calibration match shoal.metrics"]

    dlrm = '"model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [32, 16]}'
    failed = _variant(4, tmp_path, dlrm,
                      '"model": {"name": "mlp", "embedding_dim": 8, "hidden": [16, 8]}')
    assert "this lab trains shoal's DLRM" in failed["shoal's DLRM: make_config"]
    assert list(failed) == ["shoal's DLRM: make_config", "train with shoal.train: valid AUC >= 0.68, NE < 1",
                            "against the Bayes-optimal ceiling", "plot: auc_per_epoch.png"]


def test_lab3_grader_generates_the_labs_reviews() -> None:
    import importlib.util

    from shoal.academy import _load

    grader = _load(get_lab(3).path / "check.py", "shoal_test_lab3_check")
    spec = importlib.util.spec_from_file_location("shoal_test_lab3_solution", get_lab(3).solution)
    assert spec is not None and spec.loader is not None
    solution = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solution)
    for seed in (0, 1, 7):
        assert grader.reviews(200, seed) == solution.make_reviews(200, seed)
    texts, labels = solution.make_reviews(1000, 0)
    assert 0.35 < sum(labels) / len(labels) < 0.65 and max(len(t.encode()) for t in texts) <= 64
    assert any(not t.isascii() for t in texts)


def test_lab3_starter_hints_name_the_function_to_write(tmp_path: Path) -> None:
    results = {r.name: r.message for r in check(3, start(3, tmp_path / "ws"))}
    assert "in encode" in results["bytes: UTF-8 encoding, padding, invalid text"]
    assert "in decode" in results["bytes: decoding, invalid bytes safe"]
    assert "GRUClassifier" in results["GRU: shapes, padding, gradient through time"]
    assert results["training loop: the loss goes down"] == \
        "not run: needs 'byte CNN: shapes, masked pooling, gradients' to pass first"


def test_lab3_hints_for_common_mistakes(tmp_path: Path) -> None:
    failed = _variant(3, tmp_path, 'rows = [list(t.encode("utf-8", errors="replace"))[:max_len] for t in texts]',
                      "rows = [[ord(c) % 256 for c in t][:max_len] for t in texts]")
    assert "count characters" in failed["bytes: UTF-8 encoding, padding, invalid text"]

    failed = _variant(3, tmp_path, 'return data.decode("utf-8", errors="replace")', 'return data.decode("utf-8")')
    assert "errors='replace'" in failed["bytes: decoding, invalid bytes safe"]

    failed = _variant(3, tmp_path, "_, h = self.gru(packed)", "_, h = self.gru(x)")
    assert "pack_padded_sequence" in failed["GRU: shapes, padding, gradient through time"]

    failed = _variant(3, tmp_path, 'h = h.masked_fill(~mask, float("-inf")).amax(dim=2)', "h = h.amax(dim=2)")
    assert "mask the padded positions" in failed["byte CNN: shapes, masked pooling, gradients"]
    assert "held out: GRU accuracy >= 0.9" in failed  # not run: it needs the training check, which needs the CNN
