"""``shoal inspect FILE``: profile a data file and write a starter config for it.

:func:`inspect_file` streams up to ``max_rows`` rows through :func:`shoal.data.readers.read_chunks` (CSV/TSV
columns read as strings) and keeps, per column, only bounded state: 64-bit hashes of the distinct values (up
to a cap), a fixed-size sample of the numeric values, a few counters. From that it guesses each column's
kind:

- ``dense``: every non-missing value is a number. ``log1p`` for skewed integer counts, else ``standardize``.
- ``sparse``: strings (ids, categories); a cell holding a list of ids (``"a|b|c"`` in more than 10% of the
  rows) gets that separator.
- ``ignore``: nothing to learn from: always missing, constant, or unique per row (an identifier).
- ``label``: the target, given or guessed: binary (a label-like name, 0/1 values, else the first or last
  column with exactly two values), else multiclass (a label-like name with 3 to 100 values, or, in a file
  with a text column, the first or last column with 3 to 100 values: the classes of a text classifier).

It also guesses whether a CSV/TSV file has a header line and which delimiter it uses.
:func:`starter_config` turns the profile into YAML that :func:`shoal.config.load_config` accepts, with a
comment on every choice so it can be reviewed before training.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "clicks.csv").write_text("clicked,age,city\\n1,31,paris\\n0,45,rome\\n0,27,paris\\n")
>>> profile = inspect_file(folder / "clicks.csv")
>>> profile.header, profile.label, [c.kind for c in profile.columns]
(True, 'clicked', ['label', 'dense', 'sparse'])
"""

from shoal.inspect.profile import ColumnProfile, FileProfile, inspect_file
from shoal.inspect.starter import no_label_message, sparse_buckets, starter_config, train_settings
from shoal.inspect.stats import CARDINALITY_CAP, DEFAULT_MISSING

__all__ = [
    "CARDINALITY_CAP",
    "DEFAULT_MISSING",
    "ColumnProfile",
    "FileProfile",
    "inspect_file",
    "no_label_message",
    "sparse_buckets",
    "starter_config",
    "train_settings",
]
