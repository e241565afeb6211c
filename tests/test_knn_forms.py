"""Every spelling of a kNN query uses the FAISS index and gives the rows exact search gives;
a repeated statement runs its cached plan, which never outlives a change of the catalog."""

from __future__ import annotations

import numpy as np
import pytest

import mldb
from mldb.vectors import faiss as fx

DIM = 16


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _literal(query: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(x)) for x in query) + "]"


@pytest.fixture
def con(tmp_path):
    connection = mldb.connect(str(tmp_path / "knn.db"))
    connection.execute(f"CREATE TABLE pts(id INTEGER PRIMARY KEY, grp INTEGER, v FLOAT[{DIM}])")
    connection.execute(f"INSERT INTO pts SELECT id, id % 5, v::FLOAT[{DIM}] FROM "
                       "(SELECT unnest(range(0, 300)) AS id, unnest(?::FLOAT[][]) AS v)", [_vectors(300).tolist()])
    connection.execute("INSERT INTO pts VALUES (300, 0, NULL), (301, 1, NULL)")  # rows without a vector
    connection.execute("CREATE TABLE plain AS SELECT * FROM pts")  # the same rows, no index: exact search
    connection.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    yield connection
    if not connection.closed:
        connection.close()


@pytest.fixture
def searches(monkeypatch):
    """How many FAISS searches ran."""
    count = {"search": 0}
    real = fx.search

    def counted(*args, **kwargs):
        count["search"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(fx, "search", counted)
    return count


QUERY = _vectors(1, seed=7)[0]
CAST = f"::FLOAT[{DIM}]"
# (query vector as written, parameters)
FORMS = {
    "literal list": (_literal(QUERY), None),
    "cast literal": (_literal(QUERY) + CAST, None),
    "? list": ("?", [QUERY.tolist()]),
    "? numpy": ("?", [QUERY]),
    "?::FLOAT[n]": ("?" + CAST, [QUERY.tolist()]),
    "$1": ("$1", [QUERY.tolist()]),
    "$1::FLOAT[n]": ("$1" + CAST, [QUERY.tolist()]),
    "$name": ("$q", {"q": QUERY.tolist()}),
    "subquery": ("(SELECT v FROM queries WHERE id = 1)", None),
}


def _ids(con, sql, params=None):
    return [row[0] for row in con.execute(sql, params).fetchall()]


def _notes(con, sql, params=None):
    return [value for key, value in con.execute("EXPLAIN " + sql, params).fetchall() if key == "mldb_rewrite"]


def _shapes(vector: str, where: str = "", k: int = 7):
    """The statements of one query vector: ORDER BY <distance> (plain, aliased) and VECTOR_SEARCH."""
    return [
        f"SELECT id FROM {{t}} {where} ORDER BY array_cosine_distance(v, {vector}) LIMIT {k}",
        f"SELECT id, array_cosine_distance(v, {vector}) AS d FROM {{t}} {where} ORDER BY d LIMIT {k}",
        f"SELECT id FROM VECTOR_SEARCH({{t}}, v, {vector}, {k}) {where}",
        f"SELECT id, grp FROM {{t}} {where} ORDER BY array_cosine_distance(v, {vector}) LIMIT {k}",  # reads rows
        f"SELECT * FROM VECTOR_SEARCH({{t}}, v, {vector}, {k}) {where}",
    ]


def _with_queries(con):
    con.execute(f"CREATE TABLE IF NOT EXISTS queries AS SELECT 1 AS id, ?::FLOAT[{DIM}] AS v", [QUERY.tolist()])


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("where", ["", "WHERE grp = 2"])
def test_each_form_uses_the_index_and_gives_the_exact_rows(con, searches, form, where):
    _with_queries(con)
    vector, params = FORMS[form]
    reference = _shapes("?" + CAST, where)  # DuckDB itself takes no bare list or DOUBLE[] parameter
    for shape, exact_shape in zip(_shapes(vector, where), reference):
        exact = _ids(con, exact_shape.format(t="plain"), [QUERY.tolist()])
        assert len(exact) == 7
        indexed = shape.format(t="pts")
        notes = _notes(con, indexed, params)
        assert any(note.startswith("FAISS search: index pts_v") for note in notes), (indexed, notes)
        before = searches["search"]
        assert _ids(con, indexed, params) == exact, indexed
        assert _ids(con, indexed, params) == exact, indexed  # the cached plan, run again
        assert searches["search"] == before + 2, indexed


def test_every_form_gives_the_same_rows_as_the_others(con):
    _with_queries(con)
    found = {form: _ids(con, _shapes(vector)[0].format(t="pts"), params) for form, (vector, params) in FORMS.items()}
    assert len({tuple(rows) for rows in found.values()}) == 1, found


def test_a_statement_of_keys_and_distances_reads_no_rows(con):
    """Index-only: the keys and distances come from the index; other columns from the rows found."""
    params = [QUERY.tolist()]
    shapes = _shapes("?" + CAST, "WHERE grp = 3")
    only, fetch, search = shapes[1], shapes[3], shapes[4]
    assert any("index-only" in note for note in _notes(con, only.format(t="pts"), params))
    assert any("reads the rows found by key" in note for note in _notes(con, fetch.format(t="pts"), params))
    assert any("reads the rows found by key" in note for note in _notes(con, search.format(t="pts"), params))
    keys = con.execute(only.format(t="pts"), params).fetchall()
    exact = con.execute(only.format(t="plain").replace("ORDER BY d", "ORDER BY d + 0"), params).fetchall()
    assert [k for k, _ in keys] == [k for k, _ in exact]
    assert np.allclose([d for _, d in keys], [d for _, d in exact], atol=1e-5)
    assert con.execute(only.format(t="pts"), params).description[0][1] == con.execute(
        only.format(t="plain"), params).description[0][1]  # the key keeps its type (INTEGER)


def test_explain_runs_no_search(con, searches):
    _with_queries(con)
    for vector, params in FORMS.values():
        for shape in _shapes(vector, "WHERE grp = 1"):
            _notes(con, shape.format(t="pts"), params)
    assert searches["search"] == 0


def test_deleted_updated_rows_empty_table_and_large_k(con):
    con.execute("DELETE FROM pts WHERE id % 3 = 0")
    con.execute("DELETE FROM plain WHERE id % 3 = 0")
    moved = _vectors(1, seed=99)[0].tolist()
    for table in ("pts", "plain"):
        con.execute(f"UPDATE {table} SET v = ?::FLOAT[{DIM}] WHERE id IN (1, 2)", [moved])
    for vector, params in (FORMS["?::FLOAT[n]"], ("$q" + CAST, {"q": QUERY.tolist()})):
        for shape in _shapes(vector, "WHERE grp <> 4", k=500):  # k beyond the table: every row with a vector
            assert _ids(con, shape.format(t="pts"), params) == _ids(con, shape.format(t="plain"), params)
    every = con.execute("SELECT count(*) FROM pts").fetchone()[0]
    assert len(_ids(con, _shapes("?", k=500)[0].format(t="pts"), [QUERY.tolist()])) == every == 201  # NULLs last
    con.execute("DELETE FROM pts")
    for shape in _shapes("?"):
        assert _ids(con, shape.format(t="pts"), [QUERY.tolist()]) == []


def test_embed_query_text_uses_the_index(con, searches):
    con.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, body VARCHAR)")
    con.execute("INSERT INTO docs VALUES (1, 'cheap flights'), (2, 'sourdough bread'), (3, 'airline tickets')")
    con.execute("CREATE TABLE doc_plain AS SELECT id, id % 2 AS grp, EMBED(body) AS v FROM docs")
    con.execute("CREATE TABLE doc_vecs AS SELECT * FROM doc_plain")
    con.execute("CREATE INDEX doc_vecs_v ON doc_vecs USING FAISS (v) WITH (type = 'flat')")
    for shape in _shapes("EMBED('plane tickets')", k=2):
        exact = _ids(con, shape.format(t="doc_plain"))
        assert _ids(con, shape.format(t="doc_vecs")) == exact == _ids(con, shape.format(t="doc_vecs"))
    assert searches["search"] == 2 * len(_shapes(""))


# -- the plan cache never serves a stale plan ----------------------------------------------------

SQL = f"SELECT id FROM pts ORDER BY array_cosine_distance(v, ?{CAST}) LIMIT 5"


def test_dropping_and_recreating_the_index_or_table_replans(con, searches):
    params = [QUERY.tolist()]
    exact = _ids(con, SQL.replace("pts", "plain"), params)
    assert _ids(con, SQL, params) == exact and searches["search"] == 1
    con.execute("DROP INDEX pts_v")
    assert _ids(con, SQL, params) == exact and searches["search"] == 1  # exact: no index to search
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    assert _ids(con, SQL, params) == exact and searches["search"] == 2
    con.execute("DROP TABLE pts")
    con.execute(f"CREATE TABLE pts(id INTEGER PRIMARY KEY, grp INTEGER, v FLOAT[{DIM}])")
    con.execute("INSERT INTO pts SELECT id + 1000, grp, v FROM plain WHERE id < 50")
    rows = _ids(con, SQL, params)
    assert searches["search"] == 2 and rows == [i + 1000 for i in _ids(con, SQL.replace("pts", "plain WHERE id < 50"),
                                                                       params)]


def test_a_rolled_back_create_index_replans(con, searches):
    params = [QUERY.tolist()]
    con.execute("DROP INDEX pts_v")
    exact = _ids(con, SQL, params)
    con.execute("BEGIN")
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    assert _ids(con, SQL, params) == exact and searches["search"] == 1
    con.execute("ROLLBACK")
    assert _ids(con, SQL, params) == exact and searches["search"] == 1
    notes = _notes(con, SQL, params)
    assert not any("FAISS" in note for note in notes)


def test_another_connections_ddl_replans(con, searches, tmp_path):
    params = [QUERY.tolist()]
    other = mldb.connect(str(tmp_path / "knn.db"))
    exact = _ids(con, SQL, params)
    assert searches["search"] == 1
    other.execute("DROP INDEX pts_v")
    assert _ids(con, SQL, params) == exact and searches["search"] == 1
    other.execute("BEGIN")
    other.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    assert _ids(con, SQL, params) == exact and searches["search"] == 1  # not committed: not seen
    other.execute("COMMIT")
    assert _ids(con, SQL, params) == exact and searches["search"] == 2
    other.close()


def test_an_index_with_another_metric_says_why_in_explain(con):
    notes = _notes(con, f"SELECT id FROM pts ORDER BY array_distance(v, ?{CAST}) LIMIT 3", [QUERY.tolist()])
    assert any("exact search (no FAISS): index pts_v" in note and "cosine" in note for note in notes), notes


def test_template_binds_only_the_parameters_left():
    from mldb.frontend import parse, split_statements
    from mldb.plan.template import Filling, hole, render

    tree = parse(split_statements("SELECT a FROM t WHERE b = $2 ORDER BY c($1) LIMIT 3")[0])
    tree.args["order"].expressions[0].set("this", hole("rank", tree.args["order"].expressions[0].this))
    filling = Filling(render(tree), ["vector", "b"])
    assert filling.bind() == ("SELECT a FROM t WHERE b = $2 ORDER BY C($1) LIMIT 3", ["vector", "b"])
    filling.fill("rank", "list_position([3, 1], a)")
    assert filling.bind() == ("SELECT a FROM t WHERE b = $1 ORDER BY list_position([3, 1], a) LIMIT 3", ["b"])


def test_a_repeated_statement_is_parsed_once_per_catalog_version(con, searches, monkeypatch):
    from mldb import session

    parsed = []
    real = session.parse
    monkeypatch.setattr(session, "parse", lambda statement: parsed.append(statement.text) or real(statement))
    for seed in range(3):  # new query vectors, one plan
        assert len(_ids(con, SQL, [_vectors(1, seed=seed)[0].tolist()])) == 5
    assert len(parsed) == 1 and searches["search"] == 3
    con.execute("BEGIN")
    con.execute("DROP INDEX pts_v")
    exact = _ids(con, SQL.replace("pts", "plain"), [QUERY.tolist()])
    assert _ids(con, SQL, [QUERY.tolist()]) == exact and searches["search"] == 3  # dropped in this transaction
    con.execute("ROLLBACK")
    assert _ids(con, SQL, [QUERY.tolist()]) == exact and searches["search"] == 4  # the index is back
    assert parsed.count(SQL) == 3  # planned again after the DROP and after the ROLLBACK


@pytest.mark.parametrize("written", ["[{}]", "[{}]::FLOAT[16]"])
def test_a_query_vector_literal_runs_the_cached_plan_of_its_shape(con, searches, monkeypatch, written):
    """A list literal as the query vector is a parameter: a new vector is a new text, not a new plan."""
    from mldb import session

    parsed = []
    real = session.parse
    monkeypatch.setattr(session, "parse", lambda statement: parsed.append(statement.text) or real(statement))
    for seed in range(3):
        query = _vectors(1, seed=seed)[0]
        vector = written.format(", ".join(repr(float(x)) for x in query))
        for shape, exact_shape in zip(_shapes(vector, "WHERE grp = $g"), _shapes("$q" + CAST, "WHERE grp = $g")):
            exact = _ids(con, exact_shape.format(t="plain"), {"q": query.tolist(), "g": 2})
            assert _ids(con, shape.format(t="pts"), {"g": 2}) == exact
    assert len([text for text in parsed if "pts" in text]) == len(_shapes(""))  # each shape planned once
    assert searches["search"] == 3 * len(_shapes(""))


def test_a_literal_where_no_index_is_used_runs_as_written(con):
    literal = "[" + ", ".join(["0.5"] * DIM) + "]"
    with pytest.raises(mldb.ProgrammingError, match="DECIMAL"):  # DuckDB's own error, about what was written
        con.execute(f"SELECT id FROM plain ORDER BY array_cosine_distance(v, {literal}) LIMIT 3")
    import duckdb

    sql = "SELECT list_cosine_distance([1.0, 0.0], [0.5, 0.5]) AS d, typeof(d)"
    assert con.execute(sql).fetchall() == duckdb.connect().execute(sql).fetchall()  # (DECIMAL literals, as written)


def _both(con, shape, params=None):
    """(indexed rows, exact rows): the statement on pts and on plain (no index)."""
    return (con.execute(shape.format(t="pts"), params).fetchall(),
            con.execute(shape.format(t="plain"), params).fetchall())


@pytest.mark.parametrize("write", [
    ("PREPARE w AS DELETE FROM {t} WHERE id = $1", "EXECUTE w({id})"),
    ("PREPARE w AS UPDATE {t} SET v = (SELECT v FROM {t} WHERE id = 299) WHERE id = $1", "EXECUTE w({id})"),
    ("PREPARE w AS INSERT INTO {t} SELECT 1000 + $1, 0, list_transform(v, lambda x: x + 0.05)::FLOAT[16] "
     "FROM {t} WHERE id = $1", "EXECUTE w({id})"),
])
def test_execute_of_a_prepared_write_keeps_the_index_in_step(con, write):
    """A user's PREPARE / EXECUTE of a write is followed as the write itself would be: the
    indexed top k (index-only too) never returns a row the table no longer has."""
    params = [QUERY.tolist()]
    nearest = con.execute(f"SELECT id FROM plain ORDER BY array_cosine_distance(v, ?{CAST}) LIMIT 1",
                          params).fetchall()[0][0]
    prepare, run = write
    for t in ("pts", "plain"):
        con.execute(prepare.format(t=t))
        con.execute(run.format(id=nearest))
        con.execute("DEALLOCATE w")
    for shape in _shapes("?" + CAST)[:2] + _shapes("?" + CAST)[3:]:
        indexed, exact = _both(con, shape, params)
        assert [row[0] for row in indexed] == [row[0] for row in exact], shape
    keys = {row[0] for row in con.execute("SELECT id FROM pts").fetchall()}
    assert set(_ids(con, _shapes("?" + CAST, k=20)[0].format(t="pts"), params)) <= keys
    assert any(n.startswith("FAISS search") for n in _notes(con, _shapes("?" + CAST)[0].format(t="pts"), params))


@pytest.mark.parametrize("analyze", [
    "EXPLAIN ANALYZE DELETE FROM {t} WHERE id = {id}",
    "EXPLAIN ANALYZE UPDATE {t} SET v = (SELECT v FROM {t} WHERE id = 299) WHERE id = {id}",
    "EXPLAIN ANALYZE DELETE FROM {t} WHERE id = {id} AND array_cosine_distance(v, (SELECT v FROM {t} "
    "WHERE id = {id})) < 1 AND EMBED('x') IS NOT NULL",  # (planned: EMBED)
])
def test_explain_analyze_of_a_write_keeps_the_index_in_step(con, analyze):
    """EXPLAIN ANALYZE runs its statement: a write under it is followed as the write itself."""
    params = [QUERY.tolist()]
    nearest = _ids(con, f"SELECT id FROM plain ORDER BY array_cosine_distance(v, ?{CAST}) LIMIT 1", params)[0]
    for t in ("pts", "plain"):
        plan = con.execute(analyze.format(t=t, id=nearest)).fetchall()
        assert plan
    for shape in _shapes("?" + CAST)[:2] + _shapes("?" + CAST)[3:]:
        indexed, exact = _both(con, shape, params)
        assert [row[0] for row in indexed] == [row[0] for row in exact], shape


def test_execute_in_a_transaction_and_of_a_read(con):
    params = [QUERY.tolist()]
    nearest = _ids(con, f"SELECT id FROM plain ORDER BY array_cosine_distance(v, ?{CAST}) LIMIT 1", params)[0]
    con.execute("PREPARE r AS SELECT count(*) FROM pts")
    assert con.execute("EXECUTE r").fetchall() == [(302,)]
    con.execute("PREPARE d AS DELETE FROM pts WHERE id = $1")
    con.execute("BEGIN")
    con.execute(f"EXECUTE d({nearest})")
    shape = _shapes("?" + CAST)[0].format(t="pts")
    assert nearest not in _ids(con, shape, params)  # (exact inside the transaction that changed it)
    con.execute("COMMIT")
    assert nearest not in _ids(con, shape, params)
    con.execute(f"DELETE FROM plain WHERE id = {nearest}")
    assert _ids(con, shape, params) == _ids(con, shape.replace("FROM pts", "FROM plain"), params)


@pytest.mark.parametrize("hide", ["temp table", "temp view", "register"])
def test_a_temporary_table_or_frame_of_the_same_name_hides_the_index(con, hide):
    """DuckDB reads temp.pts for ``pts`` (and ``main.pts``): the index of main.pts does not apply."""
    import pyarrow as pa

    vectors = _vectors(10, seed=3)
    if hide == "temp table":
        con.execute(f"CREATE TEMP TABLE pts AS SELECT 500 + i AS id, 0 AS grp, v::FLOAT[{DIM}] AS v FROM "
                    "(SELECT unnest(range(10)) AS i, unnest(?::FLOAT[][]) AS v)", [vectors.tolist()])
    elif hide == "temp view":
        con.execute("CREATE TEMP VIEW pts AS SELECT * FROM plain WHERE id % 2 = 0")
    else:
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM)
        con.register("pts", pa.table({"id": pa.array(range(500, 510)), "grp": [0] * 10, "v": column}))
    params = [QUERY.tolist()]
    for table in ("pts", "main.pts"):
        for shape in _shapes("?" + CAST):
            sql = shape.format(t=table)
            exact = con.execute(sql, params).fetchall()
            read = {row[0] for row in con.execute(f"SELECT id FROM {table}").fetchall()}
            assert {row[0] for row in exact} <= read, sql
            assert len(exact) == min(7, len(read)), sql
            notes = _notes(con, sql, params)
            assert not any(n.startswith("FAISS search") for n in notes), (sql, notes)
            if "VECTOR_SEARCH" not in sql:
                assert any("hides the table" in n for n in notes), (sql, notes)
    if hide == "register":
        con.unregister("pts")
    else:
        con.execute(f"DROP {'TABLE' if hide == 'temp table' else 'VIEW'} temp.pts")
    shape = _shapes("?" + CAST)[0]
    assert any(n.startswith("FAISS search") for n in _notes(con, shape.format(t="pts"), params))  # (replanned)
    indexed, exact = _both(con, shape, params)
    assert indexed == exact


@pytest.mark.parametrize("projection", [
    "id, count(*) OVER () AS n, row_number() OVER (ORDER BY id) AS rn",
    "id, sum(grp) OVER (PARTITION BY grp) AS s",
    "count(*)",
    "max(id), min(array_cosine_distance(v, ?::FLOAT[16]))",
    "mode(grp)",
    "unnest([id, id])",
])
def test_window_functions_and_aggregates_are_computed_over_the_table(con, projection):
    """Computed over the k rows found they would give other values: exact search (DuckDB)."""
    params = [QUERY.tolist()] * (1 + projection.count("?"))
    shape = f"SELECT {projection} FROM {{t}} ORDER BY array_cosine_distance(v, ?{CAST}) LIMIT 3"
    params = params[:1] if "?" not in projection else params

    def run(t):
        try:
            return con.execute(shape.format(t=t), params).fetchall()
        except mldb.Error as error:  # (DuckDB refuses count(*) ... ORDER BY v: so without the index too)
            return type(error).__name__
    found = run("pts")
    assert found == run("plain")
    if not isinstance(found, str):
        assert not any(n.startswith("FAISS search") for n in _notes(con, shape.format(t="pts"), params))
    # a window or aggregate inside a subquery of the SELECT list is its own query: the index still applies
    inner = f"SELECT id, (SELECT count(*) FROM plain) AS n FROM {{t}} ORDER BY array_cosine_distance(v, ?{CAST}) LIMIT 3"
    indexed, exact = _both(con, inner, [QUERY.tolist()])
    assert indexed == exact
    assert any(n.startswith("FAISS search") for n in _notes(con, inner.format(t="pts"), [QUERY.tolist()]))


@pytest.mark.parametrize("shape", [
    "SELECT id FROM {t} ORDER BY array_cosine_distance(v, ?" + CAST + ") NULLS FIRST LIMIT 3",
    "SELECT id FROM {t} ORDER BY array_cosine_distance(v, ?" + CAST + ") LIMIT 2%",
    "SELECT id FROM {t} TABLESAMPLE 20% (bernoulli, 7) ORDER BY array_cosine_distance(v, ?" + CAST + ") LIMIT 5",
    "SELECT id FROM {t} USING SAMPLE 20% (bernoulli, 7) ORDER BY array_cosine_distance(v, ?" + CAST + ") LIMIT 5",
    "SELECT id, mldb_test_count() AS n FROM {t} ORDER BY array_cosine_distance(v, ?" + CAST + ") LIMIT 3",
    "SELECT id, mldb_test_rank(id) AS r FROM {t} ORDER BY array_cosine_distance(v, ?" + CAST + ") LIMIT 3",
    "SELECT id, nextval('mldb_test_seq') - currval('mldb_test_seq') AS s FROM {t} "
    "ORDER BY array_cosine_distance(v, ?" + CAST + ") LIMIT 3",
])
def test_orderings_samples_macros_and_volatile_functions_search_exactly(con, shape):
    """What an index search over the k rows found cannot give (rows without a vector first, a
    percentage of the table, a sample of it, a macro's window function or aggregate over the whole
    table, a sequence advanced per row read) is left to DuckDB's exact search."""
    con.execute("CREATE OR REPLACE MACRO mldb_test_count() AS count(*) OVER ()")
    con.execute("CREATE OR REPLACE MACRO mldb_test_rank(x) AS row_number() OVER (ORDER BY x)")
    con.execute("CREATE SEQUENCE IF NOT EXISTS mldb_test_seq")
    con.execute("UPDATE pts SET v = NULL WHERE id = 5")
    con.execute("UPDATE plain SET v = NULL WHERE id = 5")
    params = [QUERY.tolist()]
    indexed, exact = _both(con, shape, params)
    assert indexed == exact
    assert not any(n.startswith("FAISS search") for n in _notes(con, shape.format(t="pts"), params))


@pytest.mark.parametrize("setting", ["SET default_order = 'desc'", "SET default_null_order = 'nulls_first'"])
def test_a_default_ordering_setting_is_followed(con, setting):
    con.execute("UPDATE pts SET v = NULL WHERE id = 5")
    con.execute("UPDATE plain SET v = NULL WHERE id = 5")
    params = [QUERY.tolist()]
    shape = _shapes("?" + CAST)[0]
    assert _both(con, shape, params)[0] == _both(con, shape, params)[1]  # (a plan made before the setting)
    con.execute(setting)
    indexed, exact = _both(con, shape, params)
    assert indexed == exact
    con.execute("RESET default_order; RESET default_null_order")
    assert any(n.startswith("FAISS search") for n in _notes(con, shape.format(t="pts"), params))


def test_execute_of_a_prepared_delete_through_the_server(tmp_path):
    """The same through ``mldb serve``: a client's PREPARE / EXECUTE of a DELETE."""
    psycopg = pytest.importorskip("psycopg")
    from conftest_server import start_server

    served = start_server(tmp_path)
    try:
        with psycopg.connect(served.dsn(), autocommit=True) as client:
            client.execute("CREATE TABLE ex(id INT PRIMARY KEY, v FLOAT[2])")
            client.execute("INSERT INTO ex VALUES (1, [1, 0]), (2, [0, 1]), (3, [1, 1])")
            client.execute("CREATE INDEX ex_v ON ex USING FAISS (v) WITH (type = 'flat')")
            client.execute("PREPARE del AS DELETE FROM ex WHERE id = $1")
            client.execute("EXECUTE del(1)")
            top = "SELECT id FROM ex ORDER BY array_cosine_distance(v, [1.0, 0.0]::FLOAT[2]) LIMIT {}"
            assert client.execute(top.format(1)).fetchall() == [(3,)]
            assert client.execute(top.format(3)).fetchall() == [(3,), (2,)]
    finally:
        served.stop()
