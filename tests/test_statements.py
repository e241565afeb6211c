"""Cheap statements (issue 13): the statement-shape cache of the frontend and the DuckDB prepared
statements of texts a session runs again never change what a statement returns or raises.

Every check runs the same text several times (the first run takes the plain path, later ones
the cached or prepared path) and compares with a plain DuckDB connection given the same
statements, or with the first run."""

from __future__ import annotations

import struct
import threading

import duckdb
import psycopg
import pytest
from conftest_server import server  # noqa: F401 - the fixture

import mldb
from mldb.frontend import parse, split_statements
from mldb.server.app import Server

RUNS = 4  # runs of one text: the first plain, the second prepares, the rest execute the plan


# -- the frontend's shape cache --------------------------------------------------------------------


def test_split_is_kept_per_text_and_parse_hands_out_copies():
    sql = "SELECT id, PREDICT(m) AS p FROM t WHERE x > 3; SELECT 2"
    first, again = split_statements(sql), split_statements(sql)
    assert [s.text for s in first] == ["SELECT id, PREDICT(m) AS p FROM t WHERE x > 3", "SELECT 2"]
    assert first[0] is again[0]  # the same text is not tokenized again
    assert first is not again  # (each caller gets its own list)
    tree = parse(first[0])
    expected = tree.sql()
    tree.set("where", None)  # a rewrite changes the tree it was given ...
    assert parse(again[0]).sql() == expected  # ... never the kept one
    assert parse(split_statements(sql)[0]) is not parse(split_statements(sql)[0])


def test_unparsable_text_is_kept_as_unparsed():
    statement = split_statements("SELECT FROM WHERE PIVOT ??")[0]
    assert parse(statement) is None and parse(statement) is None


def test_explain_inner_statement_leaves_the_kept_tokens_alone():
    sql = "EXPLAIN SELECT 1 + 2"
    before = [(t.start, t.end) for t in split_statements("SELECT 1 + 2")[0].tokens]
    statement = split_statements(sql)[0]
    inner = statement.rest()
    assert inner.text == "SELECT 1 + 2" and inner.tokens[0].start == 8
    assert statement.rest().tokens[0].start == 8  # the same shift, not shifted twice
    assert [(t.start, t.end) for t in split_statements("SELECT 1 + 2")[0].tokens] == before


def test_syntax_error_position_of_a_repeated_mldb_statement():
    con = mldb.connect()
    messages = []
    for _ in range(3):
        with pytest.raises(mldb.ProgrammingError) as caught:
            con.execute("SELECT 1; CREATE MODEL m PREDICT FROM t")
        messages.append((str(caught.value), caught.value.position))
    assert messages[0] == messages[1] == messages[2]


# -- DuckDB prepared statements of repeated texts (mldb.prepared) ------------------------------------


def _both(statements: list[str]):
    """An mldb connection and a plain DuckDB connection, each given ``statements``."""
    con, reference = mldb.connect(), duckdb.connect()
    for sql in statements:
        con.execute(sql)
        reference.execute(sql)
    return con, reference


def _same(con, reference, sql: str, params=None) -> list:
    """Run ``sql`` RUNS times on both: the same rows and column types every time."""
    expected = reference.execute(sql, params).fetchall() if params is not None else reference.execute(sql).fetchall()
    types = [str(column[1]) for column in reference.description]
    for _ in range(RUNS):
        cursor = con.cursor()
        rows = cursor.execute(sql, params).fetchall() if params is not None else cursor.execute(sql).fetchall()
        assert rows == expected
        assert [str(column[1]) for column in cursor.description] == types
    return expected


def test_repeated_text_is_prepared_and_gives_the_same_rows():
    con, reference = _both(["CREATE TABLE kv AS SELECT i AS k, 'v' || i AS v FROM range(100) t(i)"])
    for i in (0, 5, 99, 1000):
        _same(con, reference, "SELECT v FROM kv WHERE k = ?", [i])
    assert "mldb_plan_" in (con._session.prepared._names.get("SELECT v FROM kv WHERE k = ?") or "")


@pytest.mark.parametrize("value", [0, -2**31, 2**31 - 1, 2**31, -2**63, 2**63 - 1, 2**64, 1.5, -0.0,
                                   float("nan"), float("inf"), 1e300, 5e-324, "", "it's", "back\\slash",
                                   "ünïcødé ☃", "a\nb\tc", "NULL", None, True, False])
def test_each_parameter_type_is_bound_as_duckdb_binds_it(value):
    con, reference = _both([])
    expected = reference.execute("SELECT typeof($1), $1::VARCHAR, $1", [value]).fetchall()
    for _ in range(RUNS):
        rows = con.execute("SELECT typeof($1), $1::VARCHAR, $1", [value]).fetchall()
        assert [row[:2] for row in rows] == [row[:2] for row in expected]
        assert repr(rows[0][2]) == repr(expected[0][2])  # (nan == nan is false; -0.0 keeps its sign)


def test_other_parameter_types_take_the_plain_path():
    import datetime as dt
    from decimal import Decimal

    con, reference = _both([])
    for value in (dt.date(2024, 2, 29), Decimal("1.25"), [1, 2], b"\x00\x01", "x" * 1000, "nul\0byte"):
        _same(con, reference, "SELECT typeof($1), $1", [value])


def test_same_text_after_the_table_changed_type():
    con, reference = _both(["CREATE TABLE t(a INTEGER)", "INSERT INTO t VALUES (1), (2)"])
    _same(con, reference, "SELECT a, typeof(a) FROM t WHERE a >= ?", [1])
    for connection in (con, reference):
        connection.execute("DROP TABLE t")
        connection.execute("CREATE TABLE t(a VARCHAR)")
        connection.execute("INSERT INTO t VALUES ('x'), ('y')")
    _same(con, reference, "SELECT a, typeof(a) FROM t WHERE a >= ?", ["a"])


def test_same_text_after_ddl_adds_and_drops_columns():
    con, reference = _both(["CREATE TABLE t(a INTEGER)", "INSERT INTO t VALUES (1)"])
    _same(con, reference, "SELECT * FROM t")
    for connection in (con, reference):
        connection.execute("ALTER TABLE t ADD COLUMN b VARCHAR DEFAULT 'new'")
    _same(con, reference, "SELECT * FROM t")
    _same(con, reference, "SELECT b FROM t WHERE a = ?", [1])
    for connection in (con, reference):
        connection.execute("ALTER TABLE t DROP COLUMN b")
    for _ in range(RUNS):  # the plan no longer binds: DuckDB's own error for the text as written
        with pytest.raises(mldb.ProgrammingError, match='"b" not found') as caught:
            con.execute("SELECT b FROM t WHERE a = ?", [1])
        with pytest.raises(duckdb.BinderException) as plain:
            reference.execute("SELECT b FROM t WHERE a = ?", [1])
        assert str(caught.value).splitlines()[0] == str(plain.value).splitlines()[0]


def test_same_text_in_another_schema_after_use():
    setup = ["CREATE TABLE t AS SELECT 'main' AS s", "CREATE SCHEMA other",
             "CREATE TABLE other.t AS SELECT 'other' AS s, 2 AS extra"]
    con, reference = _both(setup)
    assert _same(con, reference, "SELECT * FROM t") == [("main",)]
    con.execute("USE other")
    reference.execute("USE other")
    assert _same(con, reference, "SELECT * FROM t") == [("other", 2)]
    con.execute("USE main")
    reference.execute("USE main")
    assert _same(con, reference, "SELECT * FROM t") == [("main",)]


def test_functions_are_evaluated_when_the_statement_runs():
    con = mldb.connect()
    con.execute("CREATE SEQUENCE seq")
    assert [con.execute("SELECT nextval('seq') + ?", [0]).fetchone()[0] for _ in range(RUNS)] == [1, 2, 3, 4]
    for value in (1, 2, 3):
        con.execute(f"SET VARIABLE x = {value}")
        assert con.execute("SELECT getvariable('x') + ?", [0]).fetchone()[0] == value
    con.execute("SET TimeZone = 'UTC'")
    assert con.execute("SELECT current_setting('TimeZone') || ?", [""]).fetchone()[0] == "UTC"
    con.execute("SET TimeZone = 'Asia/Tokyo'")
    assert con.execute("SELECT current_setting('TimeZone') || ?", [""]).fetchone()[0] == "Asia/Tokyo"


def test_another_connection_changes_the_table(tmp_path):
    path = str(tmp_path / "two.db")
    first, second = mldb.connect(path), mldb.connect(path)
    first.execute("CREATE TABLE t(a INTEGER)")
    first.execute("INSERT INTO t VALUES (1)")
    for _ in range(RUNS):
        assert first.execute("SELECT * FROM t WHERE a > ?", [0]).fetchall() == [(1,)]
    second.execute("DROP TABLE t")
    second.execute("CREATE TABLE t(a BIGINT, b VARCHAR)")
    second.execute("INSERT INTO t VALUES (7, 'seven')")
    for _ in range(RUNS):
        cursor = first.cursor()
        assert cursor.execute("SELECT * FROM t WHERE a > ?", [0]).fetchall() == [(7, "seven")]
        assert [str(column[1]) for column in cursor.description] == ["BIGINT", "VARCHAR"]


def test_errors_are_the_plain_errors():
    con, reference = _both([])
    for _ in range(RUNS):  # (a conversion error names the text as written, with its position)
        with pytest.raises(mldb.DataError) as caught:
            con.execute("SELECT $1::INTEGER + 1", ["abc"])
        with pytest.raises(duckdb.ConversionException) as plain:
            reference.execute("SELECT $1::INTEGER + 1", ["abc"])
        assert str(plain.value).split("\n")[0] in str(caught.value)
        assert "SELECT $1::INTEGER + 1" in str(caught.value) and "EXECUTE" not in str(caught.value)


def test_a_failing_statement_runs_once():
    """A statement's own error (a division by zero) from its prepared plan is raised as it is: the
    statement does not run again the plain way (its nextval would count twice)."""
    con, _ = _both(["CREATE SEQUENCE s", "CREATE TABLE z (a INTEGER)", "INSERT INTO z VALUES (0)"])
    for _ in range(RUNS):
        with pytest.raises(mldb.DataError, match="Division by zero") as caught:
            con.execute("SELECT nextval('s'), 10 // (SELECT a FROM z)")
        assert "mldb_plan" not in str(caught.value)
    assert con.execute("SELECT currval('s')").fetchall() == [(RUNS,)]


def test_inside_a_transaction_rows_and_errors_are_the_plain_ones():
    con = mldb.connect()
    con.execute("CREATE TABLE t(a INTEGER)")
    for _ in range(RUNS):
        con.execute("SELECT count(*) FROM t WHERE a > ?", [0]).fetchall()  # prepared outside
    con.execute("BEGIN")
    con.execute("INSERT INTO t VALUES (1), (2)")
    assert con.execute("SELECT count(*) FROM t WHERE a > ?", [0]).fetchall() == [(2,)]
    with pytest.raises(mldb.DataError, match="SELECT"):
        con.execute("SELECT $1::INTEGER", ["abc"])
    con.execute("ROLLBACK")
    assert con.execute("SELECT count(*) FROM t WHERE a > ?", [0]).fetchall() == [(0,)]


def test_frames_registered_again_are_read_again():
    import pyarrow as pa

    con = mldb.connect()
    con.register("frame", pa.table({"a": [1, 2]}))
    assert [con.execute("SELECT sum(a) + ? FROM frame", [0]).fetchone()[0] for _ in range(RUNS)] == [3] * RUNS
    con.unregister("frame")
    con.register("frame", pa.table({"a": [10, 20, 30]}))
    assert [con.execute("SELECT sum(a) + ? FROM frame", [0]).fetchone()[0] for _ in range(RUNS)] == [60] * RUNS


def test_many_texts_keep_few_prepared_statements():
    con = mldb.connect()
    for i in range(200):
        for _ in range(2):
            assert con.execute(f"SELECT {i} + ?", [1]).fetchone()[0] == i + 1
    plans = con._session.prepared._names
    assert sum(1 for name in plans.values() if name) <= 64
    prepared = con.execute("SELECT count(*) FROM duckdb_prepared_statements() WHERE name LIKE 'mldb_plan_%'")
    assert prepared.fetchone()[0] <= 64


# -- the wire server: prepared statements re-run after the catalog changed ----------------------------


def test_wire_prepared_statement_after_the_catalog_changed(server):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con, \
            psycopg.connect(server.dsn(), autocommit=True) as other:
        con.execute("CREATE TABLE wire_cache(a INTEGER)")
        con.execute("INSERT INTO wire_cache VALUES (1), (2)")
        for _ in range(8):  # psycopg prepares it (a named Parse) after 5 runs
            assert con.execute("SELECT * FROM wire_cache WHERE a >= %s ORDER BY 1", [1]).fetchall() == [(1,), (2,)]
        other.execute("DROP TABLE wire_cache")
        other.execute("CREATE TABLE wire_cache(a VARCHAR, b DOUBLE)")
        other.execute("INSERT INTO wire_cache VALUES ('x', 0.5)")
        for _ in range(8):
            cursor = con.execute("SELECT * FROM wire_cache WHERE a >= %s ORDER BY 1", ["a"])
            assert cursor.fetchall() == [("x", 0.5)]
            assert [column.name for column in cursor.description] == ["a", "b"]
        for binary in (False, True):
            for value in (3, None, "it's"):
                rows = [con.cursor(binary=binary).execute("SELECT %s::VARCHAR, 1", [value]).fetchone()
                        for _ in range(8)]
                assert rows == [(None if value is None else str(value), 1)] * 8
        con.execute("CREATE SCHEMA wire_other")
        con.execute("CREATE TABLE wire_other.wire_cache AS SELECT 'other' AS a")
        con.execute("SET search_path = 'wire_other'")
        for _ in range(8):
            assert con.execute("SELECT * FROM wire_cache WHERE a >= %s", ["a"]).fetchall() == [("other",)]


def test_wire_plans_follow_the_search_path_through_reset_all(server):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.execute("CREATE TABLE path_t AS SELECT 'main' AS s")
        con.execute("CREATE SCHEMA path_other")
        con.execute("CREATE TABLE path_other.path_t AS SELECT 'other' AS s")
        for setting, expected in ((None, "main"), ("SET search_path = 'path_other'", "other"),
                                  ("RESET ALL", "main"), ("SET search_path = 'path_other'", "other"),
                                  ("DISCARD ALL", "main")):
            if setting:
                con.execute(setting)
            for _ in range(8):
                assert con.execute("SELECT s FROM path_t WHERE s >= %s", [""]).fetchall() == [(expected,)]


def test_wire_queries_from_many_clients_at_once():
    con = mldb.connect()
    listener = Server(con._session.database, "127.0.0.1", 0)
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    dsn = f"host=127.0.0.1 port={listener.address[1]} user=u dbname=d"
    failures = []

    def client(offset: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as wire:
                for i in range(60):
                    assert wire.execute("SELECT %s::int + 1", [offset + i]).fetchone() == (offset + i + 1,)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    clients = [threading.Thread(target=client, args=(1000 * n,)) for n in range(4)]
    for each in clients:
        each.start()
    for each in clients:
        each.join()
    listener.stop()
    thread.join()
    assert failures == []


# -- DataRow messages of whole batches (mldb.server.columns) ---------------------------------------

_TYPED = {  # DuckDB type: SQL of a few values of it, NULL among them
    "INTEGER": "[1, -2147483648, 2147483647, NULL]", "BIGINT": "[0, -9223372036854775808, 9223372036854775807]",
    "SMALLINT": "[1, -32768, NULL]", "TINYINT": "[-128, 127]", "UTINYINT": "[0, 255]", "USMALLINT": "[65535]",
    "UINTEGER": "[4294967295, 0]", "UBIGINT": "[18446744073709551615, NULL]",
    "HUGEINT": "[-170141183460469231731687303715884105728]",
    "DOUBLE": "[0.1, -0.0, 1e300, 5e-324, 'nan'::DOUBLE, 'inf'::DOUBLE, 123456789012345678, NULL]",
    "FLOAT": "[0.1, 3.4e38, 1e-45, 'nan'::FLOAT, 1234567]", "DECIMAL(38,10)": "[-12345.6789, 0, NULL]",
    "DECIMAL(4,1)": "[999.9, -0.1]", "BOOLEAN": "[true, false, NULL]",
    "VARCHAR": "['', 'hé \"quoted\", {braces}', E'tab\\tnew\\nline', '☃ NULL \\\\', NULL]",
    "BLOB": "['\\x00\\xff'::BLOB, ''::BLOB]", "DATE": "['2024-02-29', '0001-01-01', '9999-12-31', NULL]",
    "TIMESTAMP": "['2024-01-02 03:04:05.123456', '1970-01-01', NULL]", "TIMESTAMP_S": "['2024-01-02 03:04:05']",
    "TIMESTAMP_MS": "['2024-01-02 03:04:05.123']", "TIMESTAMP_NS": "['2024-01-02 03:04:05.123456789']",
    "TIMESTAMPTZ": "['2024-01-02 03:04:05+00', NULL]", "TIME": "['13:14:15.000016', '00:00:00']",
    "INTERVAL": "[INTERVAL 2 DAY + INTERVAL 3661 SECOND, INTERVAL 5 MICROSECOND, INTERVAL 14 MONTH, NULL]",
    "UUID": "['00000000-0000-0000-0000-000000003039', NULL]", "JSON": "['{\"k\": [1, 2]}', NULL]",
    "INTEGER[]": "[[1, NULL, 3], [], NULL]", "VARCHAR[]": "[['a b', '', 'NULL', NULL, '\"q\"']]",
    "DOUBLE[][]": "[[[1.5, 2.0], [3.0, NULL]]]", "MAP(VARCHAR, INTEGER)": "[MAP {'a': 1, 'b': NULL}, NULL]",
    "STRUCT(a INTEGER, b VARCHAR)": "[{'a': 1, 'b': 'x'}, NULL]", "INTEGER[3]": "[[1, 2, 3]]",
}


def _per_value_rows(con, sql: str, kinds, formats) -> bytes:
    """The DataRow messages of ``sql`` encoded value by value (``types``' encoders): the plain path."""
    from mldb.server import protocol

    encoders = [kind.binary if fmt else kind.text for kind, fmt in zip(kinds, formats)]
    rows = con.execute(sql).fetchall()
    return b"".join(protocol.data_row([None if v is None else e(v) for e, v in zip(encoders, row)]) for row in rows)


@pytest.mark.parametrize("fmt", [0, 1])
@pytest.mark.parametrize("duckdb_type", list(_TYPED))
def test_batch_data_rows_are_the_per_value_bytes(duckdb_type, fmt):
    from mldb.server import protocol
    from mldb.server.columns import data_rows, encode_column
    from mldb.server.types import pg_type

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sql = f"SELECT v, 7::BIGINT AS k FROM (SELECT unnest({_TYPED[duckdb_type]}::{duckdb_type}[]) AS v)"
    kinds = [pg_type(str(column[1])) for column in con.execute(sql).description]
    con.complete()
    batch = con.sql(sql).to_arrow_table().combine_chunks().to_batches()[0]
    formats = [fmt, fmt]
    columnar = protocol.data_rows([encode_column(batch.column(i), kind, fmt) for i, kind in enumerate(kinds)])
    assert data_rows(batch, kinds, formats) == columnar
    assert columnar == _per_value_rows(con, sql, kinds, formats)


def test_fixed_width_rows_with_and_without_nulls():
    from mldb.server.columns import data_rows
    from mldb.server.types import pg_type

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for nulls in ("NULL", "1"):
        sql = (f"SELECT i::BIGINT AS a, (i * 0.5)::DOUBLE AS b, i::INTEGER AS c, i::SMALLINT AS d, (i % 2 = 0) AS e, "
               f"(i * 0.25)::FLOAT AS f, DATE '2024-01-01' + i::INTEGER AS g, TIMESTAMP '2024-01-01' + "
               f"to_seconds(i) AS h, CASE WHEN i = 3 THEN {nulls} ELSE i END AS n FROM range(5000) t(i)")
        kinds = [pg_type(str(column[1])) for column in con.execute(sql).description]
        con.complete()
        batch = con.sql(sql).to_arrow_table().combine_chunks().to_batches()[0]
        for formats in ([1] * 9, [0] * 9, [1] * 8 + [0]):
            assert data_rows(batch, kinds, formats) == _per_value_rows(con, sql, kinds, formats)


# -- dates and times beyond Python's years: every row of a large result written alike ----------------


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
@pytest.mark.parametrize("kind", ["DATE", "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP_NS", "TIMESTAMP_S", "TIME",
                                  "DATE[]", "TIMESTAMPTZ[]"])
def test_batch_rows_of_dates_beyond_python_years_are_the_per_value_bytes(kind, zone):
    from mldb.server.columns import data_rows
    from mldb.server.types import pg_type

    odd = {"DATE": ["infinity", "-infinity", "0044-03-15 (BC)", "10000-01-01", "0001-01-01", "9999-12-31"],
           "TIME": ["24:00:00", "00:00:00"], "TIMESTAMP_NS": ["infinity", "-infinity", "2262-01-01 00:00:00"]}
    element = kind.rstrip("[]")
    values = odd.get(element, ["infinity", "-infinity", "0044-03-15 (BC) 01:02:03.5", "10000-01-01 00:00:00",
                               "0001-01-01 00:00:00", "9999-12-31 23:59:59"])
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{zone}'")
    for value in values:
        ordinary = "TIME '10:00:00'" if element == "TIME" else "TIMESTAMP '2024-01-02 03:04:05'"
        item = f"CASE WHEN i % 3 = 0 THEN '{value}'::{element} WHEN i % 3 = 1 THEN NULL ELSE {ordinary}::{element} END"
        sql = f"SELECT {f'[{item}, {item}]' if kind.endswith('[]') else item} AS v FROM range(9) t(i)"
        kinds = [pg_type(str(column[1])) for column in con.execute(sql).description]
        con.complete()
        batch = con.sql(sql).to_arrow_table().combine_chunks().to_batches()[0]
        for fmt in (0, 1):
            assert data_rows(batch, kinds, [fmt]) == _per_value_rows(con, sql, kinds, [fmt]), (value, fmt)
        without_nulls = f"SELECT v FROM ({sql}) WHERE v IS NOT NULL"
        batch = con.sql(without_nulls).to_arrow_table().combine_chunks().to_batches()[0]
        assert data_rows(batch, kinds, [1]) == _per_value_rows(con, without_nulls, kinds, [1]), value



_ODD_TEMPORAL = {  # (DuckDB type, literal): PostgreSQL's text of it (None: see below)
    ("DATE", "2024-02-29"): "2024-02-29", ("DATE", "0044-03-15 (BC)"): "0044-03-15 BC",
    ("DATE", "10000-01-01"): "10000-01-01", ("DATE", "infinity"): None, ("DATE", "-infinity"): None,
    ("TIMESTAMP", "2024-01-02 03:04:05.5"): "2024-01-02 03:04:05.5",
    ("TIMESTAMP", "0044-03-15 (BC) 01:02:03.25"): "0044-03-15 01:02:03.25 BC",
    ("TIMESTAMP", "10000-01-01 00:00:01"): "10000-01-01 00:00:01",
    ("TIMESTAMP", "infinity"): None, ("TIMESTAMP", "-infinity"): None,
    ("TIMESTAMPTZ", "2024-01-02 03:04:05+00"): "2024-01-02 03:04:05+00",
    ("TIMESTAMPTZ", "0044-03-15 (BC) 01:02:03+00"): "0044-03-15 01:02:03+00 BC",
    ("TIMESTAMPTZ", "0001-01-01 00:00:00+00"): "0001-01-01 00:00:00+00",
    ("TIMESTAMPTZ", "infinity"): None, ("TIMESTAMPTZ", "-infinity"): None,
    ("TIMESTAMP_NS", "2024-01-02 03:04:05.123456"): "2024-01-02 03:04:05.123456",
    ("TIMESTAMP_NS", "infinity"): None, ("TIMESTAMP_NS", "-infinity"): None,
    ("TIMESTAMP_MS", "0044-03-15 (BC) 01:02:03"): "0044-03-15 01:02:03 BC",
    ("TIME", "13:14:15.5"): "13:14:15.5", ("TIME", "24:00:00"): "24:00:00",
}


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_wire_dates_beyond_python_years_are_written_alike_in_every_row(server, binary):  # noqa: F811
    """Rows 0 and 299 of a 600-row result hold the same value: row 0 is encoded value by value
    (``types``), row 299 from an Arrow batch (``columns``); every row must be the same bytes, in
    PostgreSQL's format (``... BC``, 24:00:00; binary: days / microseconds since 2000-01-01 of the
    proleptic calendar). DuckDB's Python API gives ``date.max`` / ``datetime.max`` (``.min``) for
    infinity, so the first rows cannot tell infinity from 9999-12-31: there only rows alike are checked."""
    from psycopg.adapt import Loader

    class Raw(Loader):
        format = psycopg.pq.Format.BINARY if binary else psycopg.pq.Format.TEXT

        def load(self, data):
            return bytes(data)

    columns = list(_ODD_TEMPORAL)
    plain = {"DATE": "DATE '2024-01-01' + (i % 7)::INTEGER",
             "TIME": "TIME '10:00:00' + to_seconds(i % 7)"}
    selects = [f"CASE WHEN i IN (0, 299) THEN '{literal}'::{kind} WHEN i % 50 = 7 THEN NULL "
               f"ELSE ({plain.get(kind, 'TIMESTAMP ' + repr('2024-01-01') + ' + to_seconds(i % 7)')})::{kind} END"
               for kind, literal in columns]
    sql = f"SELECT {', '.join(selects)} FROM range(600) t(i) ORDER BY i"
    reference = duckdb.connect()  # the binary format's numbers, from DuckDB's own arithmetic
    reference.execute("SET TimeZone = 'UTC'")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        for name in ("date", "time", "timestamp", "timestamptz"):
            con.adapters.register_loader(name, Raw)
        rows = con.cursor(binary=binary).execute(sql).fetchall()
    assert len(rows) == 600
    for number, (kind, literal) in enumerate(columns):
        assert rows[299][number] == rows[0][number], (kind, literal)
        expected = _ODD_TEMPORAL[kind, literal]
        if expected is not None and not binary:
            assert rows[0][number] == expected.encode(), (kind, literal)
        elif expected is not None:
            if kind == "DATE":
                days = reference.execute(f"SELECT date_diff('day', DATE '2000-01-01', '{literal}'::DATE)").fetchone()
                assert rows[0][number] == struct.pack("!i", days[0]), (kind, literal)
            elif kind == "TIME":
                micros = reference.execute(f"SELECT epoch_us('{literal}'::TIME)").fetchone()
                assert rows[0][number] == struct.pack("!q", micros[0]), (kind, literal)
            else:
                micros = reference.execute(f"SELECT epoch_us('{literal}'::{kind}::TIMESTAMPTZ)").fetchone()
                assert rows[0][number] == struct.pack("!q", micros[0] - 946_684_800_000_000), (kind, literal)
    assert rows[1] == rows[302] and rows[6] == rows[300]  # ordinary values: the first rows and a batch
    assert rows[7] == rows[307] == (None,) * len(columns)
    with psycopg.connect(server.dsn(), autocommit=True) as con:  # each value alone: a small result
        con.execute("SET TimeZone = 'UTC'")
        for name in ("date", "time", "timestamp", "timestamptz"):
            con.adapters.register_loader(name, Raw)
        for number, (kind, literal) in enumerate(columns):
            alone = con.cursor(binary=binary).execute(f"SELECT '{literal}'::{kind}").fetchone()[0]
            assert alone == rows[0][number], (kind, literal)
