"""``mldb serve`` with real PostgreSQL clients: psql, psycopg 3, pg8000, asyncpg, JDBC."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shlex
import shutil
import subprocess
import threading
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import pg8000.native
import psycopg
import pytest
from conftest_server import server  # noqa: F401 - the fixture

ALL_TYPES = ("i INTEGER, b BIGINT, sm SMALLINT, f DOUBLE, r REAL, n DECIMAL(12,3), s VARCHAR, d DATE, ts TIMESTAMP, "
             "tz TIMESTAMPTZ, bl BLOB, arr INTEGER[], sa VARCHAR[], bo BOOLEAN, u UUID, iv INTERVAL, tm TIME, "
             "j JSON")
ROW = (1, 2**40, -7, 1.25, 0.5, Decimal("-12345.678"), 'hé "quoted", {braces}', dt.date(2024, 2, 29),
       dt.datetime(2024, 1, 2, 3, 4, 5, 123456), dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
       b"\x00\x01\xff", [1, None, 3], ["a b", "", "NULL", None], True, uuid.UUID(int=12345),
       dt.timedelta(days=2, seconds=3661, microseconds=5), dt.time(13, 14, 15, 16), '{"k": [1, 2]}')
PSQL = shutil.which("psql")


def psql(server, *commands: str) -> subprocess.CompletedProcess:  # noqa: F811
    args = [PSQL, "-h", "127.0.0.1", "-p", str(server.port), "-U", "tester", "-d", "shop", "-X", "-A", "-F", "|"]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "PGCONNECT_TIMEOUT": "30"})


@pytest.fixture(scope="module")
def typed_table(server):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.execute(f"CREATE OR REPLACE TABLE typed ({ALL_TYPES})")
        placeholders = ", ".join(["%s"] * len(ROW))
        con.execute(f"INSERT INTO typed VALUES ({placeholders})", ROW)
        con.execute(f"INSERT INTO typed VALUES ({placeholders})", [None] * len(ROW))
    return "typed"


# -- psql ------------------------------------------------------------------------------------------


def test_psql_commands_and_catalog(server):  # noqa: F811
    done = psql(server, "CREATE OR REPLACE TABLE items(id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, price DOUBLE)",
                "INSERT INTO items VALUES (1, 'pen', 1.5), (2, 'ink', NULL)", "SELECT * FROM items ORDER BY id",
                "SELECT 1 AS a; SELECT 2 AS b", r"\dt", r"\d items", r"\l", r"\dt+")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "CREATE TABLE" in out and "INSERT 0 2" in out
    assert "id|name|price\n1|pen|1.5\n2|ink|\n(2 rows)" in out
    assert "a\n1\n(1 row)\nb\n2\n(1 row)" in out  # two statements in one Query: two results
    assert "main|items|table|" in out  # \dt
    assert "id|integer||not null|" in out and "name|character varying||not null|" in out  # \d items: PostgreSQL names
    assert "shop|mldb|UTF8|" in out  # \l: the served file's database
    assert "main|items|table|mldb|permanent|" in out  # \dt+


def test_psql_error_has_sqlstate_and_keeps_session(server):  # noqa: F811
    done = psql(server, r"\set VERBOSITY verbose", "SELECT * FROM no_such_table")
    assert done.returncode == 1
    assert "ERROR:  42P01" in done.stderr


# -- psycopg 3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_every_common_type_round_trips(server, typed_table, binary):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        cursor = con.cursor(binary=binary)
        rows = cursor.execute("SELECT * FROM typed ORDER BY i NULLS LAST").fetchall()
        expected = list(ROW)
        expected[-1] = {"k": [1, 2]}  # psycopg loads json
        assert [list(rows[0])[:4] + list(rows[0])[5:]] == [expected[:4] + expected[5:]]
        assert rows[0][4] == pytest.approx(0.5)
        assert rows[1] == (None,) * len(ROW)
        types = [column.type_code for column in cursor.description]
        assert types[:8] == [23, 20, 21, 701, 700, 1700, 25, 1082]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_large_results_stream_in_batches(server, binary):  # noqa: F811
    """Past the first rows a result is encoded column by column from Arrow batches: same values."""
    query = ("SELECT i, i::VARCHAR || 'x' AS s, CASE WHEN i % 7 = 0 THEN NULL ELSE i / 4 END AS f, i % 3 = 0 AS b, "
             "DATE '2024-01-01' + i::INTEGER AS d, TIMESTAMP '2024-01-01' + INTERVAL (i) SECOND AS ts, "
             "(i / 8)::DECIMAL(12,3) AS n, [i, NULL] AS l FROM range(40000) t(i)")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        rows = con.cursor(binary=binary).execute(query).fetchall()
    assert len(rows) == 40000
    for i in (0, 1, 255, 256, 257, 7000, 39999):
        assert rows[i] == (i, f"{i}x", None if i % 7 == 0 else i / 4, i % 3 == 0, dt.date(2024, 1, 1) + dt.timedelta(days=i),
                           dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i), Decimal(i / 8).quantize(Decimal("0.001")),
                           [i, None])


def test_psycopg_parameters_bound_server_side(server, typed_table):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        got = con.execute("SELECT i FROM typed WHERE d = %s AND n = %s AND bl = %s AND sa = %s AND u = %s",
                          [ROW[7], ROW[5], ROW[10], ROW[12], ROW[14]]).fetchall()
        assert got == [(1,)]
        got = con.execute("SELECT %s::INTEGER + 1, %s::VARCHAR, %s::DATE, %s", [41, None, dt.date(2020, 1, 1), True])
        assert got.fetchone() == (42, None, dt.date(2020, 1, 1), True)
        binary = con.cursor(binary=True).execute("SELECT %b::BIGINT * 2, %b", [21, b"\x00z"]).fetchone()
        assert binary == (42, b"\x00z")
        # $n inside strings, quoted names, comments and $$-quotes are not parameters
        hidden = con.execute("""SELECT '$2' AS "$3", $$ $4 $$ AS q, /* $5 */ %s::INTEGER -- $6
                                AS n""", [7]).fetchone()
        assert hidden == ("$2", " $4 ", 7)


def test_psycopg_rowcount_and_transactions(server):  # noqa: F811
    with psycopg.connect(server.dsn()) as con:  # psycopg's default: statements inside BEGIN ... COMMIT
        con.execute("CREATE OR REPLACE TABLE counted(x INTEGER)")
        con.commit()
        assert con.execute("INSERT INTO counted SELECT * FROM range(5)").rowcount == 5
        assert con.execute("UPDATE counted SET x = x + 1 WHERE x < 3").rowcount == 3
        con.rollback()
        assert con.execute("SELECT count(*) FROM counted").fetchone() == (0,)
        con.execute("INSERT INTO counted VALUES (1), (2)")
        con.commit()
        assert con.execute("DELETE FROM counted WHERE x = 1").rowcount == 1
        con.commit()
        assert con.execute("SELECT x FROM counted").fetchall() == [(2,)]


def test_failed_transaction_accepts_only_rollback(server):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.execute("CREATE OR REPLACE TABLE ledger(x INTEGER)")
        con.execute("BEGIN")
        con.execute("INSERT INTO ledger VALUES (1)")
        with pytest.raises(psycopg.errors.UndefinedTable):
            con.execute("SELECT * FROM missing_table")
        assert con.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction) as failed:
            con.execute("SELECT 1")
        assert failed.value.sqlstate == "25P02"
        assert con.execute("COMMIT").statusmessage == "ROLLBACK"  # as PostgreSQL: a failed block cannot commit
        assert con.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert con.execute("SELECT count(*) FROM ledger").fetchone() == (0,)


def test_startup_time_zone_applies_to_that_session_only(server):  # noqa: F811
    with psycopg.connect(server.dsn(options="'-c TimeZone=Asia/Tokyo'"), autocommit=True) as tokyo, \
            psycopg.connect(server.dsn(), autocommit=True) as other:
        assert tokyo.info.parameter_status("TimeZone") == "Asia/Tokyo"
        assert tokyo.execute("SELECT current_setting('TimeZone')").fetchone() == ("Asia/Tokyo",)
        assert other.execute("SELECT current_setting('TimeZone')").fetchone() != ("Asia/Tokyo",)
        other.execute("SET TIME ZONE 'Europe/Paris'")
        other.execute("SET application_name = 'reporting'")
        assert other.execute("SELECT current_setting('TimeZone')").fetchone() == ("Europe/Paris",)
        assert other.execute("SHOW application_name").fetchone() == ("reporting",)


def test_transaction_warnings_are_notices(server):  # noqa: F811
    notices = []
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.add_notice_handler(lambda notice: notices.append((notice.sqlstate, notice.message_primary)))
        assert con.execute("COMMIT").statusmessage == "COMMIT"
        con.execute("BEGIN")
        con.execute("BEGIN")
        assert con.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        con.execute("ROLLBACK")
    assert notices == [("25P01", "there is no transaction in progress"),
                       ("25001", "there is already a transaction in progress")]


@pytest.mark.parametrize("sql, error, sqlstate", [
    ("SELEC 1", psycopg.errors.SyntaxError, "42601"),
    ("SELECT * FROM nowhere", psycopg.errors.UndefinedTable, "42P01"),
    ("SELECT no_column FROM range(1)", psycopg.errors.UndefinedColumn, "42703"),
    ("SELECT 1 // 0", psycopg.errors.DivisionByZero, "22012"),
    ("SELECT 'x'::INTEGER", psycopg.errors.InvalidTextRepresentation, "22P02"),
])
def test_errors_carry_sqlstate(server, sql, error, sqlstate):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with pytest.raises(error) as raised:
            con.execute(sql)
        assert raised.value.sqlstate == sqlstate
        assert con.execute("SELECT 'still here'").fetchone() == ("still here",)


def test_empty_query_and_multiple_statements(server):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        results = con.pgconn.exec_(b"SELECT 1; SELECT 'two', 2; ")
        assert results.ntuples == 1 and results.get_value(0, 0) == b"two"
        empty = con.pgconn.exec_(b"  ")
        assert empty.status == psycopg.pq.ExecStatus.EMPTY_QUERY


def test_multi_statement_query_is_one_transaction(server):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.execute("CREATE OR REPLACE TABLE batch(x INTEGER PRIMARY KEY)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            con.execute("INSERT INTO batch VALUES (1); INSERT INTO batch VALUES (2), (2)")
        assert con.execute("SELECT count(*) FROM batch").fetchone() == (0,)  # the first INSERT rolled back too
        assert con.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        con.execute("INSERT INTO batch VALUES (1); INSERT INTO batch VALUES (2)")
        assert con.execute("SELECT count(*) FROM batch").fetchone() == (2,)


def test_concurrent_clients(server):  # noqa: F811
    failures: list[BaseException] = []

    def client(number: int) -> None:
        try:
            with psycopg.connect(server.dsn(), autocommit=True) as con:
                for query in range(20):
                    got = con.execute("SELECT %s::INTEGER * 1000 + %s::INTEGER", [number, query]).fetchone()
                    assert got == (number * 1000 + query,)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(server.wait_for_log(r"(?s)(queries=20 .*){8}")) > 0


def test_slow_query_does_not_block_others_and_cancel_stops_it(server):  # noqa: F811
    slow = psycopg.connect(server.dsn(), autocommit=True)
    outcome: list[BaseException] = []

    def run_slow() -> None:
        try:
            slow.execute("SELECT count(*) FROM range(100000000000) a, range(1000) b WHERE a.range + b.range < 0")
        except psycopg.Error as error:
            outcome.append(error)

    thread = threading.Thread(target=run_slow)
    thread.start()
    with psycopg.connect(server.dsn(), autocommit=True) as other:
        for query in range(20):
            assert other.execute("SELECT %s::INTEGER", [query]).fetchone() == (query,)
    assert thread.is_alive()  # the slow query was still running while the other client finished
    while thread.is_alive():  # a cancel that arrives before the query starts has nothing to stop: repeat
        slow.cancel()
        thread.join(timeout=0.5)
    assert len(outcome) == 1 and isinstance(outcome[0], psycopg.errors.QueryCanceled)
    assert slow.execute("SELECT 'usable after cancel'").fetchone() == ("usable after cancel",)
    slow.close()


# -- other drivers -----------------------------------------------------------------------------------


def test_pg8000(server, typed_table):  # noqa: F811
    con = pg8000.native.Connection("tester", host="127.0.0.1", port=server.port, database="shop")
    try:
        assert con.run("SELECT i, s, d, n FROM typed WHERE i = :i", i=1) == [[1, ROW[6], ROW[7], ROW[5]]]
        assert con.run("SELECT :a::INTEGER + 1 AS x, :b AS y", a=1, b="q") == [[2, "q"]]
        assert con.run("SELECT arr, bo, bl FROM typed WHERE i = 1") == [[ROW[11], True, ROW[10]]]
    finally:
        con.close()


def test_asyncpg_binary_protocol(server, typed_table):  # noqa: F811
    async def main():
        con = await asyncpg.connect(host="127.0.0.1", port=server.port, user="tester", database="shop")
        try:
            row = await con.fetchrow("SELECT * FROM typed WHERE i = $1", 1)
            await con.execute("CREATE OR REPLACE TABLE apg(id INTEGER, tags VARCHAR[], seen TIMESTAMP, amount DECIMAL(10,2))")
            await con.executemany("INSERT INTO apg VALUES ($1, $2, $3, $4)",
                                  [(i, [f"t{i}"], dt.datetime(2024, 1, i + 1), Decimal(f"{i}.25")) for i in range(3)])
            async with con.transaction():
                rows = [r async for r in con.cursor("SELECT id FROM apg ORDER BY id", prefetch=2)]
            params = await con.fetch("SELECT id FROM apg WHERE amount > $1 AND seen < $2 ORDER BY id",
                                     Decimal("0.5"), dt.datetime(2024, 1, 3))
            # parameter types inferred from where each $n stands (asyncpg sends them in binary)
            await con.execute("UPDATE apg SET amount = $1 WHERE id = $2", Decimal("9.75"), 2)
            inferred = [
                await con.fetchval("SELECT count(*) FROM apg WHERE seen BETWEEN $1 AND $2",
                                   dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)),
                await con.fetchval("SELECT sum(id) FROM apg WHERE id IN ($1, $2)", 0, 2),
                await con.fetchval("SELECT amount FROM apg WHERE id + $1 > 3 ORDER BY id LIMIT $2", 2, 1),
                await con.fetchval("SELECT tags FROM apg WHERE id = ANY($1) AND tags = $2", [0, 1], ["t1"]),
                await con.fetchval("WITH w AS (SELECT * FROM apg) SELECT count(*) FROM w WHERE seen > $1",
                                   dt.datetime(2024, 1, 1)),
            ]
            return row, rows, params, inferred
        finally:
            await con.close()

    row, rows, params, inferred = asyncio.run(main())
    expected = dict(zip([c.split()[0] for c in ALL_TYPES.split(", ")], ROW))
    expected["j"] = ROW[-1]
    assert {key: row[key] for key in expected if key != "r"} == {k: v for k, v in expected.items() if k != "r"}
    assert [r["id"] for r in rows] == [0, 1, 2]  # fetched two at a time: PortalSuspended in between
    assert [r["id"] for r in params] == [1]
    assert inferred == [2, 2, Decimal("9.75"), ["t1"], 2]


JAVA = """
import java.sql.*;
public class Probe {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + args[0] + "/shop", "tester", "")) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE OR REPLACE TABLE jt(id INTEGER, name VARCHAR, price DECIMAL(10,2), d DATE)");
            }
            try (PreparedStatement p = c.prepareStatement("INSERT INTO jt VALUES (?, ?, ?, ?)")) {
                for (int i = 1; i <= 3; i++) {
                    p.setInt(1, i); p.setString(2, "n" + i); p.setBigDecimal(3, new java.math.BigDecimal(i + ".50"));
                    p.setDate(4, java.sql.Date.valueOf("2024-01-0" + i)); p.executeUpdate();
                }
            }
            String last = "";
            for (int round = 0; round < 7; round++) {  // past prepareThreshold (5): named server-side statements
                try (PreparedStatement p = c.prepareStatement("SELECT id, name, price, d FROM jt WHERE id >= ? ORDER BY id")) {
                    p.setInt(1, 2);
                    try (ResultSet r = p.executeQuery()) {
                        StringBuilder out = new StringBuilder();
                        while (r.next()) out.append(r.getInt(1)).append(',').append(r.getString(2)).append(',')
                            .append(r.getBigDecimal(3)).append(',').append(r.getDate(4)).append(';');
                        last = out.toString();
                    }
                }
            }
            System.out.println("rows=" + last);
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) { s.executeUpdate("DELETE FROM jt WHERE id = 1"); }
            c.rollback();
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT count(*) FROM jt")) {
                r.next(); System.out.println("count=" + r.getLong(1));
            }
            try (Statement s = c.createStatement()) { s.executeQuery("SELECT * FROM nope"); }
            catch (SQLException e) { System.out.println("error=" + e.getSQLState()); }
        }
    }
}
"""
JDBC_JAR = Path("/usr/share/java/postgresql.jar")


def test_jdbc(server, tmp_path):  # noqa: F811
    assert JDBC_JAR.exists() and shutil.which("javac"), "run .ci/setup_server.sh (libpostgresql-jdbc-java, a JDK)"
    (tmp_path / "Probe.java").write_text(JAVA)
    subprocess.run(["javac", "-cp", str(JDBC_JAR), "Probe.java"], cwd=tmp_path, check=True, timeout=120)
    done = subprocess.run(["java", "-cp", f"{JDBC_JAR}:.", "Probe", str(server.port)], cwd=tmp_path, check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["rows=2,n2,2.50,2024-01-02;3,n3,3.50,2024-01-03;", "count=3", "error=42P01"]


# -- mldb statements over the wire ---------------------------------------------------------------------


def test_models_embeddings_and_vector_search_over_the_wire(server):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.execute("CREATE OR REPLACE TABLE people AS SELECT i AS id, (i % 50)::DOUBLE AS age, "
                    "(i % 50) > 25 AS old FROM range(300) t(i)")
        con.execute("CREATE MODEL oldness PREDICT old FROM (SELECT age, old FROM people) USING logistic WITH (epochs = 40, seed = 1)")
        assert con.execute("SELECT name, task FROM mldb.models").fetchall() == [("oldness", "binary")]
        by_name = con.execute("SELECT id, PREDICT(oldness) FROM people WHERE id IN (2, 48) ORDER BY id").fetchall()
        assert [row[0] for row in by_name] == [2, 48] and all(isinstance(row[1], bool) for row in by_name)
        by_position = [con.execute("SELECT PREDICT(oldness, %s::DOUBLE)", [age]).fetchone()[0] for age in (2.0, 48.0)]
        assert by_position == [row[1] for row in by_name]

        async def described_by_asyncpg():  # asyncpg describes the statement before binding: PREDICT in it
            apg = await asyncpg.connect(host="127.0.0.1", port=server.port, user="tester", database="shop")
            try:
                return await apg.fetch("SELECT id, PREDICT(oldness) AS p FROM people WHERE id = ANY($1) ORDER BY id",
                                       [2, 48])
            finally:
                await apg.close()

        assert [(row["id"], row["p"]) for row in asyncio.run(described_by_asyncpg())] == by_name
        con.execute("CREATE OR REPLACE TABLE docs(id INTEGER, body VARCHAR)")
        con.execute("INSERT INTO docs VALUES (1, 'cheap flights and plane tickets'), (2, 'baking sourdough bread'), "
                    "(3, 'a recipe for pasta sauce')")
        con.execute("CREATE OR REPLACE TABLE doc_vecs AS SELECT id, EMBED(body) AS v FROM docs")
        vector = con.execute("SELECT v FROM doc_vecs WHERE id = 1").fetchone()[0]
        assert len(vector) == 384 and isinstance(vector[0], float)
        con.execute("CREATE INDEX doc_vecs_v ON doc_vecs USING FAISS (v)")
        hits = con.execute("SELECT id FROM VECTOR_SEARCH(doc_vecs, v, EMBED(%s), 1)", ["airline tickets"]).fetchall()
        assert hits == [(1,)]


def test_readme_examples_run(server):  # noqa: F811
    """The README's psql and psycopg examples, against a served database with their table and model."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("<!-- section: server -->")[1].split("<!-- /section: server -->")[0]
    python = section.split("```py\n")[1].split("```")[0].replace("port=5433", f"port={server.port}")
    commands = [line.split("  #")[0] for line in section.split("```bash\n")[1].split("```")[0].splitlines()
                if line.startswith("psql ")]
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.execute("CREATE OR REPLACE TABLE customers AS SELECT i AS id, 18 + i % 60 AS age, "
                    "(18 + i % 60 > 50) AS churned FROM range(500) t(i)")
        con.execute("CREATE OR REPLACE MODEL churn PREDICT churned FROM (SELECT age, churned FROM customers) "
                    "USING logistic WITH (epochs = 5, seed = 1)")
    namespace: dict = {}
    exec(python, namespace)  # noqa: S102 - the README's own snippet
    assert len(namespace["rows"]) == 8 * 27  # age > 50: 27 of every 60 ids, 8 full cycles in 500
    assert all(isinstance(row[1], bool) for row in namespace["rows"])
    for command in commands:
        args = shlex.split(command.replace("-p 5433", f"-p {server.port}"))
        done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        assert "(3 rows)" in done.stdout or 'Table "main.customers"' in done.stdout


def test_load_udfs_is_refused_over_the_wire(server, tmp_path):  # noqa: F811
    script = tmp_path / "evil.py"
    marker = tmp_path / "ran"
    script.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(f"LOAD UDFS FROM '{script}'")
        assert caught.value.sqlstate == "42501"
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not marker.exists()  # the file's code never ran on the server


def test_timestamps_are_written_as_postgresql_writes_them_in_every_row(server):  # noqa: F811
    """The first rows (per value) and the rest (whole Arrow columns) print the same way, as PostgreSQL does."""
    query = ("SELECT TIMESTAMP '2024-01-02 03:04:05' + INTERVAL (i * 500) MILLISECOND AS ts, "
             "TIME '13:14:15' + INTERVAL (i * 250) MILLISECOND AS t FROM range(600) r(i) ORDER BY i")
    lines = psql(server, query).stdout.splitlines()[1:-1]
    assert len(lines) == 600
    for i in (0, 1, 2, 255, 256, 257, 258, 599):
        stamp = dt.datetime(2024, 1, 2, 3, 4, 5) + dt.timedelta(milliseconds=500 * i)
        clock = (dt.datetime(2000, 1, 1, 13, 14, 15) + dt.timedelta(milliseconds=250 * i)).time()
        fraction = lambda value: f".{value.microsecond:06d}".rstrip("0").rstrip(".")  # noqa: E731
        assert lines[i] == f"{stamp:%Y-%m-%d %H:%M:%S}{fraction(stamp)}|{clock:%H:%M:%S}{fraction(clock)}"
    zoned = psql(server, "SET TimeZone = 'Asia/Kolkata'",
                 "SELECT TIMESTAMPTZ '2024-01-02 03:04:05+00' AS a, TIMESTAMPTZ '2024-01-02 03:04:05.25+00' AS b")
    assert zoned.stdout.splitlines()[1:3] == ["a|b", "2024-01-02 08:34:05+05:30|2024-01-02 08:34:05.25+05:30"]
