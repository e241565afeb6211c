"""FAISS indexes through SQL: recall vs exact, same rows as exact, filters, DML, persistence."""

from __future__ import annotations

import io

import numpy as np
import pytest

import mldb
DIM = 16


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, DIM))
    return (centers[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, DIM))).astype(np.float32)


def _load(con, table: str, vectors: np.ndarray, start: int = 0) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS {table}(id INTEGER PRIMARY KEY, grp INTEGER, v FLOAT[{DIM}])")
    con.execute(f"INSERT INTO {table} SELECT id, id % 10, v::FLOAT[{DIM}] FROM "
                "(SELECT unnest(range(?, ?)) AS id, unnest(?::FLOAT[][]) AS v)",
                [start, start + len(vectors), vectors.tolist()])


def _top(con, sql_filter: str, query: np.ndarray, k: int, function: str = "array_cosine_distance", table="pts"):
    rows = con.execute(f"SELECT id FROM {table} {sql_filter} ORDER BY {function}(v, ?::FLOAT[{DIM}]) LIMIT {k}",
                       [query.tolist()]).fetchall()
    return [row[0] for row in rows]


def _top_literal(con, sql_filter: str, query: np.ndarray, k: int, function="array_cosine_distance", table="pts"):
    literal = "[" + ", ".join(repr(float(x)) for x in query) + f"]::FLOAT[{DIM}]"
    rows = con.execute(f"SELECT id FROM {table} {sql_filter} ORDER BY {function}(v, {literal}) LIMIT {k}").fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def con(tmp_path):
    connection = mldb.connect(str(tmp_path / "index.db"))
    yield connection
    if not connection.closed:
        connection.close()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_recall_against_exact_search(con, kind):
    _load(con, "pts", _clustered(3000))
    queries = _clustered(20, seed=1)
    exact = [_top_literal(con, "", q, 10) for q in queries]
    con.execute(f"CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = '{kind}')")
    found = [_top_literal(con, "", q, 10) for q in queries]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)])
    assert recall >= 0.95


@pytest.mark.parametrize("metric, function", [("cosine", "array_cosine_distance"), ("l2", "array_distance"),
                                              ("ip", "array_negative_inner_product")])
def test_a_flat_index_gives_the_rows_exact_search_gives(con, metric, function):
    _load(con, "pts", _clustered(500))
    queries = _clustered(5, seed=2)
    filters = ["", "WHERE grp = 3", "WHERE grp < 9 AND id > 50"]
    exact = [[_top_literal(con, f, q, 7, function) for q in queries] for f in filters]
    con.execute(f"CREATE INDEX pts_v ON pts USING FAISS (v) WITH (metric = '{metric}', type = 'flat')")
    assert [[_top_literal(con, f, q, 7, function) for q in queries] for f in filters] == exact
    # a parameter as the query vector (the search then runs inside DuckDB)
    assert [[_top(con, f, q, 7, function) for q in queries] for f in filters] == exact


def test_filters_still_return_k_rows(con):
    _load(con, "pts", _clustered(3000))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'hnsw')")
    query = _clustered(1, seed=3)[0]
    for where, expected in [("WHERE grp = 4", 10), ("WHERE id % 500 = 0", 6), ("WHERE grp < 9", 10),
                            ("WHERE id < 0", 0)]:
        found = _top_literal(con, where, query, 10)
        assert len(found) == expected
        assert set(found) == set(_exact_ids(con, where, query, 10))


def _exact_ids(con, where, query, k):
    literal = "[" + ", ".join(repr(float(x)) for x in query) + f"]::FLOAT[{DIM}]"
    rows = con.execute(f"SELECT id, array_cosine_distance(v, {literal}) AS d FROM pts {where} "
                       f"ORDER BY d + 0 LIMIT {k}").fetchall()  # d + 0: not the indexed pattern
    return [row[0] for row in rows]


def test_explain_shows_the_index(con):
    _load(con, "pts", _clustered(100))
    query = "EXPLAIN SELECT id FROM pts ORDER BY array_cosine_distance(v, [" + ", ".join(["0.1"] * DIM) + \
        f"]::FLOAT[{DIM}]) LIMIT 3"
    assert not any(key == "mldb_rewrite" for key, _ in con.execute(query).fetchall())
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v)")
    notes = [value for key, value in con.execute(query).fetchall() if key == "mldb_rewrite"]
    assert notes == ["FAISS search: index pts_v (hnsw, cosine) on pts.v, top 3; reads only the keys found (index-only)",
                     "executor: local (this process)"]


def test_dml_keeps_the_index_in_step(con):
    rng = np.random.default_rng(5)
    _load(con, "pts", _clustered(400))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    next_id = 400
    for step in range(12):
        action = step % 3
        if action == 0:
            _load(con, "pts", _clustered(30, seed=10 + step), start=next_id)
            next_id += 30
        elif action == 1:
            con.execute("DELETE FROM pts WHERE id % 7 = ?", [step % 7])
        else:
            con.execute(f"UPDATE pts SET v = list_transform(v, lambda x: 0.5 - x)::FLOAT[{DIM}] WHERE id % 11 = ?",
                        [step % 11])
        query = rng.normal(size=DIM).astype(np.float32)
        assert _top_literal(con, "", query, 8) == _exact_ids(con, "", query, 8)
    row_count, = con.execute("SELECT row_count FROM mldb.indexes").fetchone()
    assert row_count == con.execute("SELECT count(*) FROM pts").fetchone()[0]


def test_a_rolled_back_change_leaves_the_index_as_it_was(con):
    _load(con, "pts", _clustered(200))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    query = _clustered(1, seed=9)[0]
    nearest = _top_literal(con, "", query, 1)[0]
    cursor = con.cursor()
    cursor.execute("BEGIN")
    cursor.execute("DELETE FROM pts WHERE id = ?", [nearest])
    literal = "[" + ", ".join(repr(float(x)) for x in query) + f"]::FLOAT[{DIM}]"
    inside = cursor.execute(f"SELECT id FROM pts ORDER BY array_cosine_distance(v, {literal}) LIMIT 1").fetchone()
    assert inside[0] != nearest
    cursor.execute("ROLLBACK")
    assert _top_literal(con, "", query, 1) == [nearest]


def test_the_index_survives_reopen_and_a_stale_index_catches_up(tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / "persist.db")
    con = mldb.connect(path)
    _load(con, "pts", _clustered(300))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'hnsw')")
    query = _clustered(1, seed=4)[0]
    before = _top_literal(con, "", query, 5)
    data, = con.execute("SELECT data FROM mldb.index_data").fetchone()
    assert bool(np.load(io.BytesIO(data))["vectors_from_table"])  # the graph only: vectors come from the table
    con.close()
    con = mldb.connect(path)
    assert _top_literal(con, "", query, 5) == before
    con.close()
    # a process that changes the table and dies without closing: the stored bytes are older than the index
    script = (f"import os, mldb\ncon = mldb.connect({path!r})\n"
              f"con.execute('INSERT INTO pts VALUES (999, 0, ?::FLOAT[{DIM}])', [{query.tolist()!r}])\n"
              f"con.execute('DELETE FROM pts WHERE id = {before[0]}')\n"
              "os._exit(0)\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == 0
    con = mldb.connect(path)
    assert con.execute("SELECT version, row_count, stale FROM mldb.indexes").fetchone() == (3, 300, True)
    # the old bytes, vectors from the table (the deleted row's are gone), caught up
    assert _top_literal(con, "", query, 5) == [999] + before[1:5]
    assert _top_literal(con, "", query, 5) == _exact_ids(con, "", query, 5)
    con.close()
    con = mldb.connect(path)  # closing wrote the bytes again
    assert con.execute("SELECT version, row_count, stale FROM mldb.indexes").fetchone() == (3, 300, False)
    assert con.execute("SELECT count(*) FROM mldb.index_changes").fetchone() == (0,)
    assert _top_literal(con, "", query, 5) == _exact_ids(con, "", query, 5)
    con.close()


def test_vector_search_with_embed(con):
    con.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, topic VARCHAR, body VARCHAR)")
    con.execute("""INSERT INTO docs VALUES (1, 'travel', 'cheap flights to paris'),
        (2, 'travel', 'low cost airline tickets'), (3, 'food', 'how to bake sourdough bread'),
        (4, 'food', 'a quick pasta recipe'), (5, 'sport', 'the football match ended in a draw')""")
    con.execute("CREATE TABLE doc_vecs AS SELECT id, topic, EMBED(body) AS v FROM docs")
    con.execute("CREATE INDEX doc_vecs_v ON doc_vecs USING FAISS (v)")
    rows = con.execute("SELECT id, distance FROM VECTOR_SEARCH(doc_vecs, v, EMBED('plane tickets'), 2)").fetchall()
    assert [row[0] for row in rows] == [2, 1] and rows[0][1] < rows[1][1]
    rows = con.execute("SELECT id FROM VECTOR_SEARCH(doc_vecs, v, EMBED('plane tickets'), 2) WHERE topic = 'food'")
    assert sorted(row[0] for row in rows.fetchall()) == [3, 4]
    top = con.execute("SELECT id FROM doc_vecs ORDER BY array_cosine_distance(v, EMBED('bread baking')) LIMIT 1")
    assert top.fetchone() == (3,)
    rows = con.execute("SELECT id FROM VECTOR_SEARCH(doc_vecs, v, EMBED(?), 2) WHERE topic = ?", ["plane tickets", "food"])
    assert sorted(row[0] for row in rows.fetchall()) == [3, 4]  # ``?`` in the query vector, used twice inside
    rows = con.execute("SELECT id FROM VECTOR_SEARCH(doc_vecs, v, EMBED($1), 2)", ["plane tickets"]).fetchall()
    assert [row[0] for row in rows] == [2, 1]


def test_a_list_column_with_one_length_is_indexed(con):
    con.execute("CREATE TABLE pts(id INTEGER, v FLOAT[])")
    con.execute("INSERT INTO pts VALUES (1, [1, 0]), (2, [0, 1]), (3, [1, 1])")
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (metric = 'l2', type = 'flat')")
    rows = con.execute("SELECT id, distance FROM VECTOR_SEARCH(pts, v, [0.9, 0.1]::FLOAT[2], 1)").fetchall()
    assert rows[0][0] == 1


@pytest.mark.parametrize("sql, error, message", [
    ("CREATE INDEX bad ON pts USING FAISS (grp)", mldb.ProgrammingError, "not a vector"),
    ("CREATE INDEX bad ON pts USING FAISS (v) WITH (metric = 'hamming')", mldb.ProgrammingError, "option metric must be one of 'cosine', 'l2', 'ip'; found 'hamming'"),
    ("CREATE INDEX pts_v ON pts USING FAISS (v)", mldb.ProgrammingError, "already exists"),
    ("DROP INDEX missing_index", mldb.ProgrammingError, "does not exist"),
    ("SELECT id FROM pts ORDER BY array_cosine_distance(v, [1, 2]::FLOAT[2]) LIMIT 3", mldb.DataError,
     "2 values; index pts_v holds 16-dimensional"),
    ("SELECT id FROM pts ORDER BY array_cosine_distance(v, ?::FLOAT[2]) LIMIT 3", mldb.DataError,
     "2 values; index pts_v holds 16-dimensional"),
    ("INSERT INTO pts SELECT 5, 1, v FROM pts WHERE id = 1", mldb.IntegrityError, "Duplicate key"),
])
def test_bad_input_changes_nothing(con, tmp_path, sql, error, message):
    _load(con, "pts", _clustered(50))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v)")
    before = con.execute("SELECT name, version, row_count FROM mldb.indexes").fetchall()
    params = [[1.0, 2.0]] if "?" in sql else None
    with pytest.raises(error, match=message):
        con.execute(sql, params)
    assert con.execute("SELECT name, version, row_count FROM mldb.indexes").fetchall() == before
    assert con.execute("SELECT count(*) FROM pts").fetchone() == (50,)


def _readme_sql(section: str) -> str:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    part = text[text.index(f"<!-- section: {section} -->"):text.index(f"<!-- /section: {section} -->")]
    return re.search(r"```sql\n(.*?)```", part, flags=re.S).group(1)


def test_the_readme_tour_runs(con):
    results = [_rows(con, sql) for sql in _statements(_readme_sql("vectors"))]
    assert results[5] == [(2,), (1,)]          # plane tickets: the airline, then the flights
    assert sorted(results[6]) == [(3,), (4,)]  # the food filter still gives 2 rows
    assert [row[0] for row in results[7]][:2] == [2, 1] and len(results[7]) == 3
    assert any(key == "mldb_rewrite" and "FAISS search: index doc_vecs_v (hnsw, cosine)" in value
               for key, value in results[8])
    assert results[11] == [("doc_vecs_v", "doc_vecs", "v", "cosine", "hnsw", 5, 3)]


def _statements(sql: str) -> list[str]:
    from mldb.frontend import split_statements

    return [statement.text for statement in split_statements(sql)]


def _rows(con, sql: str):
    cursor = con.execute(sql)
    return cursor.fetchall() if cursor.description else None


@pytest.mark.parametrize("crash_in, statement, committed", [
    ("mldb.vectors.faiss:serialize", "CREATE INDEX pts_w ON pts USING FAISS (v) WITH (type = 'flat')", False),
    ("mldb.vectors.store:read_hashes", f"INSERT INTO pts VALUES (500, 0, [{', '.join(['0.25'] * DIM)}]::FLOAT[{DIM}])",
     False),
    # after DuckDB committed, before the index in memory (or its bytes) followed
    ("mldb.vectors.store:VectorState._apply", f"INSERT INTO pts VALUES (500, 0, [{', '.join(['0.25'] * DIM)}]::FLOAT[{DIM}])",
     True),
])
def test_a_crash_mid_write_leaves_the_last_good_state(tmp_path, crash_in, statement, committed):
    import subprocess
    import sys

    path = str(tmp_path / "crash.db")
    con = mldb.connect(path)
    _load(con, "pts", _clustered(100))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    con.close()
    module, _, attribute = crash_in.partition(":")
    owner, _, name = attribute.rpartition(".")
    script = (f"import functools, importlib, os, mldb\ncon = mldb.connect({path!r})\n"
              f"target = functools.reduce(getattr, {owner!r}.split('.') if {owner!r} else [], "
              f"importlib.import_module({module!r}))\n"
              f"setattr(target, {name!r}, lambda *a, **k: os._exit(3))\n"
              f"con.execute({statement!r})\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == 3  # died inside (or right after) the write
    con = mldb.connect(path)
    assert con.execute("SELECT count(*) FROM pts").fetchone() == (101 if committed else 100,)
    assert con.execute("SELECT name, version FROM mldb.indexes").fetchall() == [("pts_v", 2 if committed else 1)]
    query = np.full(DIM, 0.25, dtype=np.float32)
    assert _top_literal(con, "", query, 5) == _exact_ids(con, "", query, 5)
    query = _clustered(1, seed=8)[0]
    assert _top_literal(con, "", query, 5) == _exact_ids(con, "", query, 5)
    con.close()


def test_writes_that_cannot_move_vectors_skip_the_work(con):
    _load(con, "pts", _clustered(100))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    con.execute("UPDATE pts SET grp = grp + 1 WHERE id < 50")            # not the vector: nothing to do
    con.execute("WITH few AS (SELECT 3 AS id) SELECT count(*) FROM pts JOIN few USING (id)").fetchall()  # reads
    assert con.execute("SELECT version FROM mldb.indexes").fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM mldb.index_changes").fetchone() == (0,)
    con.execute("WITH few AS (SELECT 99 AS id) DELETE FROM pts WHERE id IN (SELECT id FROM few)")  # a write
    assert con.execute("SELECT version, row_count FROM mldb.indexes").fetchone() == (2, 99)
    con.execute(f"INSERT OR REPLACE INTO pts VALUES (3, 0, [{', '.join(['0.5'] * DIM)}]::FLOAT[{DIM}])")
    query = np.full(DIM, 0.5, dtype=np.float32)                           # an upsert moved row 3
    assert _top_literal(con, "", query, 1) == [3]
    con.execute("UPDATE pts SET id = 1000 WHERE id = 3")                  # a new key for the same vector
    assert _top_literal(con, "", query, 1) == [1000]


def test_a_rolled_back_create_index_leaves_no_index(con):
    _load(con, "pts", _clustered(200))
    query = _clustered(1, seed=6)[0]
    exact = _top_literal(con, "", query, 5)
    cursor = con.cursor()
    cursor.execute("BEGIN")
    cursor.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    literal = "[" + ", ".join(repr(float(x)) for x in query) + f"]::FLOAT[{DIM}]"
    search = f"SELECT id FROM pts ORDER BY array_cosine_distance(v, {literal}) LIMIT 5"
    assert any(key == "mldb_rewrite" for key, _ in cursor.execute("EXPLAIN " + search).fetchall())
    assert [row[0] for row in cursor.execute(search).fetchall()] == exact
    cursor.execute("ROLLBACK")
    assert cursor.execute("SELECT count(*) FROM mldb.indexes").fetchone() == (0,)
    assert not any(key == "mldb_rewrite" for key, _ in cursor.execute("EXPLAIN " + search).fetchall())
    assert [row[0] for row in cursor.execute(search).fetchall()] == exact


def test_query_vector_parameters_as_text_or_named(con):
    _load(con, "pts", _clustered(300))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    query = _clustered(1, seed=12)[0]
    exact = _exact_ids(con, "WHERE grp = 2", query, 4)
    text = "[" + ", ".join(repr(float(x)) for x in query) + "]"   # what a wire client may send
    sql = f"SELECT id FROM pts WHERE grp = ? ORDER BY array_cosine_distance(v, ?::FLOAT[{DIM}]) LIMIT 4"
    assert [row[0] for row in con.execute(sql, [2, text]).fetchall()] == exact
    named = f"SELECT id FROM pts WHERE grp = $g ORDER BY array_cosine_distance(v, $q::FLOAT[{DIM}]) LIMIT 4"
    assert [row[0] for row in con.execute(named, {"g": 2, "q": query.tolist()}).fetchall()] == exact


def test_the_grammar_parses_each_vector_form():
    from sqlglot import exp

    from mldb.frontend import parse, split_statements
    from mldb.frontend import vectors as grammar

    def tree(sql):
        return parse(split_statements(sql)[0])

    create = tree("CREATE INDEX IF NOT EXISTS d_v ON s.docs USING FAISS (v) WITH (metric = 'l2', m = 16)")
    assert isinstance(create, grammar.CreateFaissIndex) and create.args["exists"]
    assert (create.this.name, create.args["table"].db, create.args["table"].name, create.args["column"].name) == \
        ("d_v", "s", "docs", "v")
    assert [item.sql() for item in create.args["options"].expressions] == ["metric = 'l2'", "m = 16"]
    assert not isinstance(tree("CREATE INDEX d_a ON docs (a)"), grammar.CreateFaissIndex)  # DuckDB's own
    assert isinstance(tree("DROP INDEX IF EXISTS d_v"), grammar.DropFaissIndex)
    assert isinstance(tree("LOAD UDFS FROM 'f.py'").this, exp.Literal)
    assert isinstance(tree("LOAD UDFS FROM ?").this, exp.Placeholder)
    embed = tree("SELECT EMBED(body, 'm') FROM docs").expressions[0]
    assert isinstance(embed, grammar.Embed) and embed.sql() == "EMBED(body, 'm')"
    search = tree("SELECT * FROM VECTOR_SEARCH(docs, v, [1, 2], 3)").args["from_"].this.this
    assert isinstance(search, grammar.VectorSearch) and len(search.expressions) == 4
    with pytest.raises(mldb.ProgrammingError, match="syntax error"):
        tree("CREATE INDEX d_v ON docs USING FAISS (v, w)")


# -- transactions: every way to roll back leaves the index as DuckDB holds the table ---------------

def _rollback_setup(path):
    con = mldb.connect(path)
    _load(con, "pts", _clustered(200))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    query = _clustered(1, seed=21)[0]
    return con, query, _top_literal(con, "", query, 5)


def _change_nearest(con, query, nearest):
    """Changes that move the top 5: a new nearest row, the old nearest deleted, another moved away."""
    con.execute(f"INSERT INTO pts VALUES (9000, 0, ?::FLOAT[{DIM}])", [(query * 1.01).tolist()])
    con.execute("DELETE FROM pts WHERE id = ?", [nearest[0]])
    con.execute(f"UPDATE pts SET v = ?::FLOAT[{DIM}] WHERE id = ?", [(-query).tolist(), nearest[1]])


def _matches_exact(con, query, expected=None):
    found = _top_literal(con, "", query, 5)
    assert found == _exact_ids(con, "", query, 5)
    rows = con.execute(f"SELECT id FROM VECTOR_SEARCH(pts, v, ?::FLOAT[{DIM}], 5)", [query.tolist()]).fetchall()
    assert [row[0] for row in rows] == found
    if expected is not None:
        assert found == expected
    return found


@pytest.mark.parametrize("how", ["sql", "connection", "cursor"])
def test_rollback_of_begin_leaves_the_index_as_it_was(tmp_path, how):
    con, query, before = _rollback_setup(str(tmp_path / "rb.db"))
    con.execute("BEGIN")
    _change_nearest(con, query, before)
    inside = _matches_exact(con, query)  # inside the transaction: its own changes (DuckDB ranks them)
    assert inside[0] == 9000 and before[0] not in inside
    other = mldb.connect(str(tmp_path / "rb.db"))  # another connection does not see them
    _matches_exact(other, query, before)
    if how == "sql":
        con.execute("ROLLBACK")
    elif how == "connection":
        con.rollback()
    else:
        con.cursor().execute("ROLLBACK")
    _matches_exact(con, query, before)
    _matches_exact(other, query, before)
    assert con.execute("SELECT version, row_count FROM mldb.indexes").fetchone() == (1, 200)
    con.execute(f"INSERT INTO pts VALUES (9001, 0, ?::FLOAT[{DIM}])", [query.tolist()])  # the index moves on
    assert _matches_exact(other, query)[0] == 9001
    other.close()
    con.close()


def test_a_with_block_that_raises_rolls_back(tmp_path):
    path = str(tmp_path / "with.db")
    con, query, before = _rollback_setup(path)
    with pytest.raises(ZeroDivisionError):
        with mldb.connect(path) as inner:
            inner.execute("BEGIN")
            _change_nearest(inner, query, before)
            assert _matches_exact(inner, query)[0] == 9000
            1 / 0
    _matches_exact(con, query, before)
    with mldb.connect(path) as inner:  # and one that does not raise commits
        inner.execute("BEGIN")
        _change_nearest(inner, query, before)
    assert _matches_exact(con, query)[0] == 9000
    con.close()


def test_a_failing_statement_rolls_back_its_own_transaction(con):
    _load(con, "pts", _clustered(200))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    query = _clustered(1, seed=22)[0]
    before = _matches_exact(con, query)
    near = (query * 1.01).tolist()
    with pytest.raises(mldb.IntegrityError):  # DuckDB refuses the second row after adding the first
        con.execute(f"INSERT INTO pts VALUES (9000, 0, ?::FLOAT[{DIM}]), (?, 0, ?::FLOAT[{DIM}])",
                    [near, before[1], near])
    _matches_exact(con, query, before)
    nan = [float("nan")] + [0.0] * (DIM - 1)
    with pytest.raises(mldb.DataError, match="NaN"):  # DuckDB takes it, the index cannot: both roll back
        con.execute(f"INSERT INTO pts VALUES (9000, 0, ?::FLOAT[{DIM}]), (9001, 0, ?::FLOAT[{DIM}])", [near, nan])
    assert con.execute("SELECT count(*) FROM pts WHERE id >= 9000").fetchone() == (0,)
    _matches_exact(con, query, before)
    with pytest.raises(mldb.IntegrityError):  # an UPDATE that fails after moving some rows
        con.execute("UPDATE pts SET id = CASE WHEN id = ? THEN ? ELSE id END, v = ?::FLOAT[16]",
                    [before[0], before[1], (-query).tolist()])
    _matches_exact(con, query, before)
    assert con.execute("SELECT version, row_count FROM mldb.indexes").fetchone() == (1, 200)


def test_a_write_the_index_cannot_follow_fails_its_transaction(con):
    _load(con, "pts", _clustered(100))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    query = _clustered(1, seed=23)[0]
    before = _matches_exact(con, query)
    con.execute("BEGIN")
    con.execute(f"INSERT INTO pts VALUES (9000, 0, ?::FLOAT[{DIM}])", [(query * 1.01).tolist()])
    with pytest.raises(mldb.DataError, match="NaN"):
        con.execute(f"INSERT INTO pts VALUES (9001, 0, ?::FLOAT[{DIM}])", [[float("nan")] * DIM])
    with pytest.raises(mldb.OperationalError, match="aborted"):  # DuckDB takes nothing more but ROLLBACK
        con.execute("SELECT count(*) FROM pts")
    con.commit()  # as in DuckDB, committing a failed transaction rolls it back
    assert con.execute("SELECT count(*) FROM pts").fetchone() == (100,)
    _matches_exact(con, query, before)
    assert con.execute("SELECT version, row_count FROM mldb.indexes").fetchone() == (1, 100)


def test_create_and_drop_index_roll_back(tmp_path):
    con, query, before = _rollback_setup(str(tmp_path / "ddl.db"))
    con.execute("BEGIN")
    con.execute("DROP INDEX pts_v")
    assert not any(key == "mldb_rewrite" for key, _ in con.execute("EXPLAIN " + _exact_sql(query)).fetchall())
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'hnsw')")  # the name is free again
    con.execute("CREATE INDEX pts_w ON pts USING FAISS (v) WITH (metric = 'l2', type = 'flat')")
    _change_nearest(con, query, before)
    _matches_exact(con, query)
    con.rollback()
    assert con.execute("SELECT name, kind, version FROM mldb.indexes").fetchall() == [("pts_v", "flat", 1)]
    _matches_exact(con, query, before)
    con.execute("BEGIN")
    con.execute("CREATE INDEX pts_w ON pts USING FAISS (v) WITH (metric = 'l2', type = 'flat')")
    con.commit()
    assert sorted(row[0] for row in con.execute("SELECT name FROM mldb.indexes").fetchall()) == ["pts_v", "pts_w"]
    con.close()
    con = mldb.connect(str(tmp_path / "ddl.db"))
    assert _top_literal(con, "", query, 5, "array_distance") == _exact_ids_l2(con, query, 5)
    _matches_exact(con, query, before)
    con.close()


def _exact_sql(query) -> str:
    literal = "[" + ", ".join(repr(float(x)) for x in query) + f"]::FLOAT[{DIM}]"
    return f"SELECT id FROM pts ORDER BY array_cosine_distance(v, {literal}) LIMIT 5"


def _exact_ids_l2(con, query, k):
    literal = "[" + ", ".join(repr(float(x)) for x in query) + f"]::FLOAT[{DIM}]"
    rows = con.execute(f"SELECT id FROM pts ORDER BY array_distance(v, {literal}) + 0 LIMIT {k}").fetchall()
    return [row[0] for row in rows]


def test_writers_on_one_thread_do_not_wait_for_each_other(tmp_path):
    """A second connection on the thread whose transaction holds an index's changes cannot wait
    for it (that transaction cannot end while the thread waits): a clean 40001 at once."""
    path = str(tmp_path / "one_thread.db")
    con, query, before = _rollback_setup(path)
    other = mldb.connect(path)
    con.execute("BEGIN")
    con.execute("DELETE FROM pts WHERE id = ?", [before[0]])
    with pytest.raises(mldb.OperationalError) as caught:
        other.execute("DELETE FROM pts WHERE id = ?", [before[1]])
    assert caught.value.sqlstate == "40001"
    _matches_exact(other, query, before)  # searches do not wait
    con.commit()
    other.execute("DELETE FROM pts WHERE id = ?", [before[1]])  # free again
    _matches_exact(other, query, before[2:] + _exact_ids(other, "", query, 5)[3:])
    other.close()
    con.close()


# -- EXPLAIN plans: it embeds nothing and searches nothing --------------------------------------------

def test_explain_computes_no_embedding_and_runs_no_search(con, monkeypatch):
    from mldb.vectors import embedding
    from mldb.vectors import faiss as fx

    con.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, topic VARCHAR, body VARCHAR)")
    con.execute("""INSERT INTO docs VALUES (1, 'travel', 'cheap flights to paris'),
        (2, 'travel', 'low cost airline tickets'), (3, 'food', 'how to bake sourdough bread')""")
    con.execute("CREATE TABLE plain AS SELECT id, topic, EMBED(body) AS v FROM docs")
    con.execute("CREATE TABLE doc_vecs AS SELECT * FROM plain")
    con.execute("CREATE INDEX doc_vecs_v ON doc_vecs USING FAISS (v)")
    counts = {"encode": 0, "search": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(embedding, "_encode", counted("encode", embedding._encode))
    monkeypatch.setattr(fx, "search", counted("search", fx.search))
    embedding.clear_cache()  # any embedding would have to be computed
    statements = [
        "SELECT id FROM doc_vecs ORDER BY array_cosine_distance(v, EMBED('text')) LIMIT 3",
        "SELECT id, distance FROM VECTOR_SEARCH(doc_vecs, v, EMBED('text'), 3)",
        "SELECT id FROM VECTOR_SEARCH(doc_vecs, v, EMBED('text'), 2) WHERE topic = 'food'",
        "SELECT id FROM doc_vecs WHERE topic = 'travel' ORDER BY array_cosine_distance(v, EMBED('text')) LIMIT 1",
    ]
    for sql in statements:
        notes = [value for key, value in con.execute("EXPLAIN " + sql).fetchall() if key == "mldb_rewrite"]
        assert any("FAISS search: index doc_vecs_v (hnsw, cosine) on doc_vecs.v" in note
                   and "EMBED with model all-MiniLM-L6-v2" in note for note in notes), notes
        assert any(note.startswith("EMBED: model all-MiniLM-L6-v2 (384 dimensions)") for note in notes), notes
    plain = con.execute("EXPLAIN SELECT id FROM plain ORDER BY array_cosine_distance(v, EMBED('text')) LIMIT 3")
    assert any("EMBED: model all-MiniLM-L6-v2" in value for key, value in plain.fetchall() if key == "mldb_rewrite")
    assert counts == {"encode": 0, "search": 0}
    # running them does both (the counters see the real work), with the rows exact search gives
    for sql in statements[:2]:
        rows = [row[0] for row in con.execute(sql).fetchall()]
        exact = [row[0] for row in con.execute(sql.replace("doc_vecs", "plain")).fetchall()]
        assert rows == exact
    assert counts == {"encode": 1, "search": 2}


def test_a_file_from_before_the_change_rows_is_migrated(tmp_path):
    import duckdb

    path = str(tmp_path / "old.db")
    con = mldb.connect(path)
    _load(con, "pts", _clustered(100))
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    con.close()
    old = duckdb.connect(path)  # the layout before: mldb.indexes was the table
    old.execute("DROP VIEW mldb.indexes")
    old.execute("CREATE TABLE mldb.indexes AS SELECT * FROM mldb.index_definitions")
    old.execute("UPDATE mldb.indexes SET version = 7, stale = true")  # (that version wrote large indexes lazily)
    old.execute("DROP TABLE mldb.index_definitions")
    old.execute("DROP TABLE mldb.index_changes")
    old.execute("DELETE FROM pts WHERE id IN (94, 26)")  # written after its bytes: the two nearest rows
    old.close()
    read_only = mldb.connect(path, read_only=True)  # read as it is
    query = _clustered(1, seed=31)[0]
    nearest = _exact_ids(read_only, "", query, 5)
    assert _top_literal(read_only, "", query, 5) == nearest and not {94, 26} & set(nearest)
    read_only.close()
    con = mldb.connect(path)
    assert con.execute("SELECT name, version, row_count, stale FROM mldb.indexes").fetchall() == \
        [("pts_v", 7, 100, True)]  # (the old row count: the next change or checkpoint brings it up to date)
    assert _top_literal(con, "", query, 5) == _exact_ids(con, "", query, 5)
    assert _top_literal(con, "", query, 5) == nearest
    con.execute(f"DELETE FROM pts WHERE id = {nearest[0]}")
    assert con.execute("SELECT version, row_count FROM mldb.indexes").fetchone() == (8, 97)
    assert _top_literal(con, "", query, 5) == _exact_ids(con, "", query, 5) == nearest[1:] + _exact_ids(con, "", query, 5)[4:]
    con.close()


def test_use_switches_which_table_an_unqualified_search_reads():
    """The current schema is cached per session: USE must make the next search read the other table."""
    con = mldb.connect()
    for schema, offset in (("main", 0), ("other", 1000)):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.execute(f"CREATE TABLE {schema}.docs AS SELECT range + {offset} AS id, "
                    "[cos(range), sin(range)]::FLOAT[2] AS v FROM range(200)")
    con.execute("CREATE INDEX docs_v ON main.docs USING FAISS (v) WITH (type = 'flat')")
    query = "SELECT id FROM docs ORDER BY array_cosine_distance(v, [1, 0]::FLOAT[2]) LIMIT 3"
    assert all(id_ < 1000 for (id_,) in con.execute(query).fetchall())
    con.execute("USE other")
    assert all(id_ >= 1000 for (id_,) in con.execute(query).fetchall())
    con.execute("USE main")
    assert all(id_ < 1000 for (id_,) in con.execute(query).fetchall())
    con.close()
