"""Row dicts as a table: NaN is missing (as from a data frame), a mixed column is named with its rows."""

from __future__ import annotations

import pytest

from shoal.data.rows import rows_table


def test_nan_is_missing_as_in_a_data_frame() -> None:
    table = rows_table([{"shop": "a", "price": 1.5}, {"shop": float("nan"), "price": float("nan")}])
    assert table.to_pylist() == [{"shop": "a", "price": 1.5}, {"shop": None, "price": None}]
    assert rows_table([{"shop": float("nan")}]).column("shop").null_count == 1  # not the id "nan"


def test_a_column_mixing_kinds_is_named_with_its_rows() -> None:
    with pytest.raises(ValueError, match=r"column 'shop': row 0 holds text, row 2 a number \(5\); send one kind"):
        rows_table([{"shop": "a"}, {"shop": None}, {"shop": 5}])
