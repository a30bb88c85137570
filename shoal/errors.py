"""The one base of the errors a user can fix: a bad config, a bad input file, an unknown run, a missing lab.

Every such error subclasses :class:`ShoalError` (and keeps its older base, e.g. ``ValueError``, so existing
``except`` clauses still catch it). The command line maps a :class:`ShoalError` to one red ``error:`` line and
the exit code in :attr:`ShoalError.exit_code`, in one place (:func:`shoal.cli.common.user_errors`); anything
else is a bug and keeps its traceback. Messages say what was wrong, show the value and say how to fix it::

    try:
        shoal.train("configs/typo.yaml")
    except shoal.ShoalError as err:
        print(err)   # configs/typo.yaml: unknown field 'epoch' in train; did you mean 'epochs'?
"""

from __future__ import annotations

__all__ = ["ShoalError"]


class ShoalError(Exception):
    """An error the user can fix from its message; the command line exits with :attr:`exit_code` (2: bad usage)."""

    exit_code: int = 2
