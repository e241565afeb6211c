"""Bad input that is neither a model's nor an index's: the process survives, the error is typed."""

from __future__ import annotations

import pytest

import mldb


@pytest.mark.parametrize("sql", [
    "SELECT " + "PREDICT(" * 500 + "m" + ")" * 500,
    "SELECT " + "EMBED(" * 900 + "'x'" + ")" * 900,
])
def test_a_statement_nested_too_deep_is_54001_and_changes_nothing(tmp_path, sql):
    with mldb.connect(str(tmp_path / "deep.db")) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS i")
        with pytest.raises(mldb.ProgrammingError) as caught:
            con.execute(sql)
        assert caught.value.sqlstate == "54001" and "too deeply nested" in str(caught.value)
        assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)
