"""A query vector written as a list literal is made a parameter so its statement's plan is kept
(``mldb.plan.literals``); what the statement returns must be what the text as written returns:
the same values, types and column names, with or without an index."""

from __future__ import annotations

import mldb


def _names(con, sql: str) -> list[str]:
    return [column[0] for column in con.execute(sql).description]


def test_a_literal_not_used_by_an_index_keeps_its_type():
    """Rewritten for PREDICT, a distance over a FLOAT[] column keeps FLOAT (a DOUBLE[] parameter would
    make it DOUBLE and change its value in the last digits)."""
    con = mldb.connect()
    con.execute("CREATE TABLE d AS SELECT i AS id, [i * 0.1, 1]::FLOAT[] AS f, (i % 7)::DOUBLE AS a, "
                "(i % 7 * 2.0 + 1) AS y FROM range(100) r(i)")
    con.execute("CREATE MODEL m PREDICT y FROM (SELECT a, y FROM d) USING linear WITH (epochs = 2)")
    distance = "list_distance(f, [0.3, 1.7])"
    plain = con.execute(f"SELECT {distance} AS dd, typeof({distance}) FROM d WHERE id = 3").fetchall()
    for _ in range(3):
        rewritten = con.execute(f"SELECT {distance} AS dd, typeof({distance}), PREDICT(m) IS NOT NULL "
                                "FROM d WHERE id = 3").fetchall()
        assert [row[:2] for row in rewritten] == plain
        assert plain[0][1] == "FLOAT"


def test_column_names_are_the_written_ones_with_an_index():
    con = mldb.connect()
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v FLOAT[2])")
    con.execute("INSERT INTO t VALUES (1, [1, 0]), (2, [0, 1]), (3, [1, 1])")
    queries = [
        "SELECT id, array_cosine_distance(v, [1.0, 0.5]::FLOAT[2]) FROM t "
        "ORDER BY array_cosine_distance(v, [1.0, 0.5]::FLOAT[2]) LIMIT 2",
        "SELECT id, array_cosine_distance(v, [1.0, 0.5]::FLOAT[2]) FROM t ORDER BY 2 LIMIT 2",
        "SELECT * FROM VECTOR_SEARCH(t, v, [1.0, 0.5], 2)",
        "SELECT id, array_distance([1.0, 2.0]::FLOAT[2], [3.0, 4.0]::FLOAT[2]) FROM t "
        "ORDER BY array_cosine_distance(v, [1.0, 0.5]::FLOAT[2]) LIMIT 2",
    ]
    before = [(_names(con, sql), con.execute(sql).fetchall()) for sql in queries]
    con.execute("CREATE INDEX t_v ON t USING FAISS (v) WITH (type = 'flat')")
    for sql, (names, rows) in zip(queries, before):
        for _ in range(2):
            assert _names(con, sql) == names
            assert [row[0] for row in con.execute(sql).fetchall()] == [row[0] for row in rows]
    assert "$" not in " ".join(_names(con, queries[0]))


def test_a_users_prepared_statement_of_mldbs_name_changes_nothing():
    from mldb import prepared

    con = mldb.connect()
    following = next(prepared._NAMES) + 1  # the numbers mldb's next prepared statements take
    for number in range(following, following + 5):
        con.execute(f"PREPARE mldb_plan_{number} AS SELECT 'hijacked', 1")
    for value in range(4):  # (prepared on the second run)
        assert con.execute("SELECT 1 + ?", [value]).fetchall() == [(1 + value,)]
