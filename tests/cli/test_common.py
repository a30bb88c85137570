"""shoal.cli.common: every user error becomes one ``error:`` line and its exit code, in one place."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from shoal.academy.grader import AcademyError
from shoal.artifacts.registry import AmbiguousRunError, RegistryError, RunNotFoundError
from shoal.cli import common
from shoal.cli import main as cli
from shoal.config import ConfigError
from shoal.data.readers import BadInputError
from shoal.distributed.launch import DistributedRunError
from shoal.errors import ShoalError

runner = CliRunner()


def _app(err: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def fail() -> None:
        with common.user_errors():
            raise err

    return app


@pytest.mark.parametrize(("error", "bases"), [
    (ConfigError, (ValueError,)), (BadInputError, (ValueError,)), (RegistryError, ()),
    (RunNotFoundError, (KeyError,)), (AmbiguousRunError, ()), (AcademyError, ()),
    (DistributedRunError, (RuntimeError,)),
])
def test_user_facing_errors_are_shoal_errors_and_keep_their_bases(error: type[Exception],
                                                                   bases: tuple[type[Exception], ...]) -> None:
    assert issubclass(error, ShoalError)
    assert all(issubclass(error, base) for base in bases)


@pytest.mark.parametrize("error", [ConfigError, BadInputError, RegistryError, RunNotFoundError, AcademyError,
                                   ShoalError, FileNotFoundError, ValueError])
def test_a_user_error_prints_one_line_and_exits_2(error: type[Exception]) -> None:
    result = runner.invoke(_app(error("data.csv: fix the label column")))
    assert result.exit_code == 2
    assert result.output.strip() == "error: data.csv: fix the label column"


def test_a_failed_distributed_run_exits_1() -> None:
    result = runner.invoke(_app(DistributedRunError("the distributed run failed (torchrun exit code 1)")))
    assert result.exit_code == 1
    assert result.output.strip() == "error: the distributed run failed (torchrun exit code 1)"


def test_brackets_in_a_message_are_printed_not_read_as_markup() -> None:
    result = runner.invoke(_app(ShoalError("choose from [auc] or [bold]")))
    assert result.output.strip() == "error: choose from [auc] or [bold]"


def test_other_errors_keep_their_traceback() -> None:
    result = runner.invoke(_app(KeyError("a bug")))
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


def test_the_entry_point_console_is_the_shared_one() -> None:
    assert cli.console is common.console and cli.err_console is common.err_console
