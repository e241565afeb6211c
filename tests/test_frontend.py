"""The splitter and the dispatch: what goes to DuckDB as written, what gets parsed."""

from __future__ import annotations

import pytest

import mldb
from mldb.frontend import split_statements


def texts(sql):
    return [statement.text for statement in split_statements(sql)]


def test_split_keeps_semicolons_in_strings_and_comments():
    sql = "SELECT 'a;b' AS x; -- note; here\nSELECT $$c;d$$ /* ; */; ;  SELECT \"odd;name\" FROM t"
    assert texts(sql) == ["SELECT 'a;b' AS x", "-- note; here\nSELECT $$c;d$$ /* ; */", 'SELECT "odd;name" FROM t']


def test_split_of_blank_and_comment_only_text_is_empty():
    assert texts("  ;; -- nothing\n") == []


def test_statement_positions_point_into_the_original_string():
    sql = "SELECT 1;\n  EXPLAIN  ANALYZE SELECT 2 AS x"
    second = split_statements(sql)[1]
    assert sql[second.offset:] == second.text
    inner = second.rest().rest()
    assert inner.text == "SELECT 2 AS x" and sql[inner.offset:] == inner.text
    assert [token.text for token in inner.tokens][:2] == ["SELECT", "2"]


def test_untokenizable_text_goes_to_duckdb_as_written():
    con = mldb.connect()
    with pytest.raises(mldb.ProgrammingError) as caught:
        con.execute("SELECT 'unterminated")
    assert "unterminated" in str(caught.value)


def test_duckdb_only_syntax_is_not_regenerated():
    con = mldb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS a FROM range(4)")
    assert con.execute("FROM t SELECT sum(a) GROUP BY ALL").fetchall() == [(6,)]
    assert con.execute("SELECT a FROM t ORDER BY ALL DESC LIMIT 1").fetchall() == [(3,)]
    assert con.execute("SUMMARIZE t").fetchone()[0] == "a"
