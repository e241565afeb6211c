"""Run every sql/**/*.test file as its own test case on a fresh database file."""

from __future__ import annotations

from pathlib import Path

import pytest

import mldb
from sqllogic import Record, format_row, read_records, same_rows

ROOT = Path(__file__).resolve().parent.parent
TEST_FILES = sorted((ROOT / "sql").rglob("*.test"))


@pytest.mark.parametrize("path", TEST_FILES, ids=[str(p.relative_to(ROOT / "sql")) for p in TEST_FILES])
def test_sql_file(path: Path, tmp_path):
    database = str(tmp_path / "logic.db")
    connection = mldb.connect(database)
    try:
        for record in read_records(path.read_text()):
            where = f"{path.relative_to(ROOT)}:{record.line}"
            if record.kind == "restart":
                connection.close()
                connection = mldb.connect(database)
            elif record.kind == "statement":
                _statement(connection, record, where)
            else:
                _query(connection, record, where)
    finally:
        connection.close()


def _statement(connection, record: Record, where: str) -> None:
    if not record.expect_error:
        try:
            connection.execute(record.sql)
        except mldb.Error as error:
            pytest.fail(f"{where}: statement failed: {type(error).__name__}: {error}\n{record.sql}")
        return
    with pytest.raises(mldb.Error) as caught:
        connection.execute(record.sql)
    fragment = "\n".join(record.expected).strip()
    assert fragment in str(caught.value), f"{where}: expected an error containing {fragment!r}, got {caught.value}"
    if record.error_class:
        assert type(caught.value).__name__ == record.error_class, \
            f"{where}: expected {record.error_class}, got {type(caught.value).__name__}: {caught.value}"
    if record.sqlstate:
        assert caught.value.sqlstate == record.sqlstate, \
            f"{where}: expected SQLSTATE {record.sqlstate}, got {caught.value.sqlstate}: {caught.value}"


def _query(connection, record: Record, where: str) -> None:
    try:
        rows = connection.execute(record.sql).fetchall()
    except mldb.Error as error:
        pytest.fail(f"{where}: query failed: {type(error).__name__}: {error}\n{record.sql}")
    actual = [format_row(row, record.types) for row in rows]
    expected = [line.split("\t") for line in record.expected]
    if record.sort == "rowsort":
        actual, expected = sorted(actual), sorted(expected)
    elif record.sort == "valuesort":
        actual = [[v] for v in sorted(v for row in actual for v in row)]
        expected = [[v] for v in sorted(v for row in expected for v in row)]
    shown = "\n".join("\t".join(row) for row in actual)
    assert same_rows(actual, expected, record.types), f"{where}: {record.sql}\ngot:\n{shown}"
