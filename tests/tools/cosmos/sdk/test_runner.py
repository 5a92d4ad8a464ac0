"""The SDK-suite runner's verdict (tests/tools/cosmos/sdk/run.py): a failure not on the out-of-scope
list fails the run, a listed one does not, and a listed entry that passes is reported stale."""

from __future__ import annotations

import pytest

from tests.tools.cosmos.sdk import run
from tests.tools.cosmos.sdk.run import ModuleResult

LISTED = "test_crud.py::TestCRUDOperations::test_user_crud"  # users: out of scope
UNLISTED = "test_crud.py::TestCRUDOperations::test_database_crud_something_new"
PASSING = "test_crud.py::TestCRUDOperations::test_document_crud_ok"


def verdict(failed: list[str], passed: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    results = {"test_crud.py": ModuleResult(passed=len(passed), failed=failed)}
    code = run.report("4.17.1", ["test_crud.py"], results, set(failed) | set(passed), 1.0)
    capsys.readouterr()
    return code


def test_a_listed_failure_passes_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.reason_for(LISTED)
    assert verdict([LISTED], [PASSING], capsys) == 0


def test_an_unlisted_failure_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.reason_for(UNLISTED) is None
    assert verdict([LISTED, UNLISTED], [PASSING], capsys) == 1


def test_a_listed_test_that_passes_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict([], [LISTED, PASSING], capsys) == 1


def test_a_module_that_did_not_run_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    code = run.report("4.17.1", ["test_crud.py"], {}, set(), 1.0)
    capsys.readouterr()
    assert code == 1


def test_every_entry_has_a_reason() -> None:
    assert all(reason.strip() for reason in run.OUT_OF_SCOPE.values())
    assert run.MAY_PASS.issubset(run.OUT_OF_SCOPE)
