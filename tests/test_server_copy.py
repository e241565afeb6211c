"""COPY ... FROM STDIN / TO STDOUT against a real ``mldb serve``: psql's ``\\copy``, psycopg's
``cursor.copy``, pg8000 (the extended protocol), and bad input (malformed lines, CopyFail, a
client that hangs up, a rolled-back transaction)."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import subprocess
import threading
from pathlib import Path

import pg8000.native
import psycopg
import pytest
from conftest_server import raw_connect, read_until, send, server  # noqa: F401 - the fixture

PSQL = shutil.which("psql")


def psql(served, *commands: str, check: bool = True) -> subprocess.CompletedProcess:
    args = [PSQL, "-h", "127.0.0.1", "-p", str(served.port), "-U", "tester", "-d", "shop", "-X", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        args += ["-c", command]
    done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "30"})
    if check:
        assert done.returncode == 0, done.stderr
    return done


def rows(served, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(served.dsn(), autocommit=True) as con:
        return con.execute(sql, params).fetchall()


def run(served, *statements: str) -> None:
    with psycopg.connect(served.dsn(), autocommit=True) as con:
        for statement in statements:
            con.execute(statement)


# -- psql \copy ------------------------------------------------------------------------------------

CSV_IN = ('id,name,price,ts,ok\n'
          '1,"comma, ""quote""",1.5,2024-01-02 03:04:05,t\n'
          '2,"two\nlines\tand tab",,2024-02-29 00:00:00.25,f\n'
          '3,,-0.125,,\n'
          '4,"",0,1999-12-31 23:59:59.999999,t\n'
          '5,héllo 🎉 \\back,1e+20,2024-01-01 00:00:00,f\n')


def test_psql_copy_csv_header_in_and_out(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE csv_t(id INTEGER, name VARCHAR, price DOUBLE, ts TIMESTAMP, ok BOOLEAN)")
    source = tmp_path / "in.csv"
    source.write_text(CSV_IN, encoding="utf-8")
    done = psql(server, f"\\copy csv_t FROM '{source}' CSV HEADER")
    assert "COPY 5" in done.stdout
    assert rows(server, "SELECT * FROM csv_t ORDER BY id") == [
        (1, 'comma, "quote"', 1.5, dt.datetime(2024, 1, 2, 3, 4, 5), True),
        (2, "two\nlines\tand tab", None, dt.datetime(2024, 2, 29, 0, 0, 0, 250000), False),
        (3, None, -0.125, None, None),  # an unquoted empty field is NULL, a quoted one ('""') is ''
        (4, "", 0.0, dt.datetime(1999, 12, 31, 23, 59, 59, 999999), True),
        (5, "héllo 🎉 \\back", 1e20, dt.datetime(2024, 1, 1), False)]
    out = tmp_path / "out.csv"
    done = psql(server, f"\\copy csv_t TO '{out}' WITH (FORMAT csv, HEADER)")
    assert "COPY 5" in done.stdout
    assert out.read_text(encoding="utf-8") == CSV_IN  # byte for byte what PostgreSQL writes for these rows


TEXT_IN = ("1\ttab\\there\tnew\\nline\n"
           "2\tback\\\\slash\t\\N\n"
           "3\t\\\\N is not null\tcr\\rlf\n"
           "4\t\t{\"a\": [1]}\n"
           "5\t\\N\t\n")


def test_psql_copy_text_format_escapes_round_trip(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE text_t(id INTEGER, a VARCHAR, b VARCHAR)")
    source = tmp_path / "in.txt"
    source.write_text(TEXT_IN, encoding="utf-8")
    assert "COPY 5" in psql(server, f"\\copy text_t FROM '{source}'").stdout
    assert rows(server, "SELECT id, a, b FROM text_t ORDER BY id") == [
        (1, "tab\there", "new\nline"), (2, "back\\slash", None), (3, "\\N is not null", "cr\rlf"),
        (4, "", '{"a": [1]}'), (5, None, "")]
    out = tmp_path / "out.txt"
    psql(server, f"\\copy text_t TO '{out}'")
    assert out.read_text(encoding="utf-8") == TEXT_IN


def test_psql_copy_rarer_escapes_delimiters_and_end_marker(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE esc_t(id INTEGER, a VARCHAR)")
    source = tmp_path / "in.txt"  # octal, hex, an escaped delimiter, a backslash before a plain character
    source.write_bytes(b"1|\\101\\x42\\303\\251\n2|pipe\\|inside\\\\\n3|\\q\\b\n\\.\n")
    psql(server, f"\\copy esc_t FROM '{source}' WITH (DELIMITER '|')")
    assert rows(server, "SELECT id, a FROM esc_t ORDER BY id") == [(1, "ABé"), (2, "pipe|inside\\"), (3, "q\b")]
    out = tmp_path / "out.txt"
    psql(server, f"\\copy esc_t TO '{out}' (DELIMITER '|')")
    assert out.read_bytes() == b"1|AB\xc3\xa9\n2|pipe\\|inside\\\\\n3|q\\b\n"


def test_psql_copy_query_to_file_with_options(server, tmp_path):  # noqa: F811
    out = tmp_path / "q.csv"
    psql(server, f"\\copy (SELECT i, 'v' || i AS v, NULL::INTEGER AS n FROM range(3) t(i) ORDER BY i) TO '{out}' "
                 "WITH (FORMAT csv, DELIMITER ';', FORCE_QUOTE *, NULL 'NA', HEADER)")
    assert out.read_text() == 'i;v;n\n"0";"v0";NA\n"1";"v1";NA\n"2";"v2";NA\n'
    old = tmp_path / "old.csv"  # the syntax before PostgreSQL 9.0, as psql passes it on
    psql(server, f"\\copy (SELECT 'a' AS x, 'b,c' AS y) TO '{old}' WITH CSV HEADER FORCE QUOTE x")
    assert old.read_text() == 'x,y\n"a","b,c"\n'


def test_psql_copy_column_list_and_defaults(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE cols_t(id INTEGER, note VARCHAR DEFAULT 'none', n INTEGER)")
    source = tmp_path / "in.csv"
    source.write_text("7,1\n8,\n")
    assert "COPY 2" in psql(server, f"\\copy cols_t (n, id) FROM '{source}' (FORMAT csv)").stdout
    assert rows(server, "SELECT * FROM cols_t ORDER BY id") == [(1, "none", 7), (None, "none", 8)]


def test_psql_copy_100k_rows_round_trip(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE big_src AS SELECT i AS id, "
                "CASE WHEN i % 7 = 0 THEN NULL ELSE 'row ' || i || chr(9) || 'é\"' || chr(10) || '\\' END AS s, "
                "i / 3.0 AS f, TIMESTAMP '2024-01-01' + to_microseconds(i * 1000003) AS ts, i % 2 = 0 AS b "
                "FROM range(100000) t(i)")
    run(server, "CREATE OR REPLACE TABLE big_text AS FROM big_src LIMIT 0",
        "CREATE OR REPLACE TABLE big_csv AS FROM big_src LIMIT 0")
    text, csv = tmp_path / "big.txt", tmp_path / "big.csv"
    psql(server, f"\\copy big_src TO '{text}'", f"\\copy big_src TO '{csv}' CSV")
    done = psql(server, f"\\copy big_text FROM '{text}'", f"\\copy big_csv FROM '{csv}' CSV")
    assert done.stdout.count("COPY 100000") == 2
    for copy in ("big_text", "big_csv"):
        assert rows(server, f"SELECT count(*) FROM (FROM big_src EXCEPT ALL FROM {copy})") == [(0,)]
        assert rows(server, f"SELECT count(*) FROM (FROM {copy} EXCEPT ALL FROM big_src)") == [(0,)]
    assert len(text.read_text().splitlines()) == 100_000


def test_psql_copy_into_a_faiss_indexed_table_updates_the_index(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE vec_t(id INTEGER PRIMARY KEY, v FLOAT[2])",
        "INSERT INTO vec_t VALUES (1, [0, 0]), (2, [10, 10])",
        "CREATE INDEX vec_t_v ON vec_t USING FAISS (v) WITH (metric = 'l2', type = 'flat')")
    source = tmp_path / "v.txt"
    source.write_text("3\t{5,5}\n4\t[-3, 4]\n")
    assert "COPY 2" in psql(server, f"\\copy vec_t FROM '{source}'").stdout
    query = "SELECT id FROM vec_t ORDER BY array_distance(v, [5.1, 5.0]::FLOAT[2]) LIMIT 1"
    plan = " ".join(str(row) for row in rows(server, "EXPLAIN " + query))
    assert "faiss" in plan.lower()  # the search goes through the index, which now holds the copied rows
    assert rows(server, query) == [(3,)]
    assert rows(server, "SELECT id FROM vec_t ORDER BY array_distance(v, [-3.0, 4.0]::FLOAT[2]) LIMIT 1") == [(4,)]


# -- psycopg cursor.copy --------------------------------------------------------------------------


def test_psycopg_copy_write_row_and_read_rows(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE pc_t(id INTEGER, name VARCHAR, ts TIMESTAMPTZ, f DOUBLE, d DATE, "
                "tags VARCHAR[], raw BLOB, u UUID)")
    data = [(1, "tab\tnew\nline\\ \"q\" é", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), 1.25,
             dt.date(2024, 2, 29), ["a b", "", None], b"\x00\x01\xff", "00000000-0000-0000-0000-000000003039"),
            (2, None, None, None, None, None, None, None)]
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        cursor = con.cursor()
        with cursor.copy("COPY pc_t FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        assert cursor.statusmessage == "COPY 2" and cursor.rowcount == 2
        stored = cursor.execute("SELECT id, name, ts, f, d, tags, raw, u::VARCHAR FROM pc_t ORDER BY id").fetchall()
        assert stored[0][:2] == data[0][:2] and stored[0][2] == data[0][2] and stored[0][3:] == data[0][3:]
        assert stored[1] == data[1]
        with cursor.copy("COPY (SELECT id, name, ts, f, d, tags, raw FROM pc_t ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int4", "text", "timestamptz", "float8", "date", "text[]", "bytea"])
            assert [tuple(row) for row in copy.rows()] == [row[:7] for row in data]


def test_psycopg_copy_csv_chunks_and_column_list(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE chunk_t(a INTEGER, b VARCHAR)")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        cursor = con.cursor()
        with cursor.copy("COPY chunk_t (b, a) FROM STDIN WITH (FORMAT csv)") as copy:
            for piece in (b'"x,', b'y""",1\nplain', b",2\n", b"", b'"multi\nline",3'):  # chunks split anywhere
                copy.write(piece)
        with cursor.copy("COPY chunk_t TO STDOUT (FORMAT csv)") as copy:
            out = b"".join(bytes(chunk) for chunk in copy)
    assert out == b'1,"x,y"""\n2,plain\n3,"multi\nline"\n'


def test_psycopg_binary_copy_is_refused_clearly(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE bin_t(a INTEGER)")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="binary format"):
            with con.cursor().copy("COPY bin_t TO STDOUT (FORMAT binary)"):
                pass
        assert con.execute("SELECT 1").fetchone() == (1,)  # the connection goes on


def test_pg8000_copy_through_the_extended_protocol(server):  # noqa: F811
    import io

    run(server, "CREATE OR REPLACE TABLE p8_t(a INTEGER, b VARCHAR)")
    con = pg8000.native.Connection("tester", host="127.0.0.1", port=server.port, database="shop")
    try:
        con.run("COPY p8_t FROM STDIN WITH (FORMAT csv)", stream=io.BytesIO(b"1,one\n2,two\n"))
        assert con.row_count == 2
        out = io.BytesIO()
        con.run("COPY (SELECT * FROM p8_t ORDER BY a) TO STDOUT", stream=out)
        assert out.getvalue() == b"1\tone\n2\ttwo\n"
    finally:
        con.close()


# -- bad input ------------------------------------------------------------------------------------


def test_malformed_csv_names_the_line_and_inserts_nothing(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE bad_t(id INTEGER, f DOUBLE)", "INSERT INTO bad_t VALUES (0, 0)")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with pytest.raises(psycopg.errors.BadCopyFileFormat) as shape:
            with con.cursor().copy("COPY bad_t FROM STDIN (FORMAT csv)") as copy:
                copy.write(b"1,1\n2,2\n3,3,3\n4,4\n")
        assert "COPY bad_t, line 3" in str(shape.value) and "3,3,3" in str(shape.value)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as value:
            with con.cursor().copy("COPY bad_t FROM STDIN (FORMAT csv, HEADER)") as copy:
                copy.write(b"id,f\n1,1.5\n2,two\n")
        assert "line 3" in str(value.value) and 'column "f"' in str(value.value) and "two" in str(value.value)
    source = tmp_path / "bad.csv"
    source.write_text("1,1\nx,2\n")
    done = psql(server, f"\\copy bad_t FROM '{source}' CSV", check=False)
    assert done.returncode != 0 and "line 2" in done.stderr
    assert rows(server, "SELECT * FROM bad_t") == [(0, 0.0)]


def test_copy_fail_and_rolled_back_transaction_insert_nothing(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE fail_t(a INTEGER)")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with pytest.raises(ZeroDivisionError):
            with con.cursor().copy("COPY fail_t FROM STDIN") as copy:
                copy.write_row((1,))
                1 / 0  # psycopg sends CopyFail
        assert con.execute("SELECT count(*) FROM fail_t").fetchone() == (0,)
    with psycopg.connect(server.dsn()) as con:  # an explicit transaction
        with con.cursor().copy("COPY fail_t FROM STDIN") as copy:
            copy.write_row((2,))
        assert con.execute("SELECT count(*) FROM fail_t").fetchone() == (1,)  # visible inside it
        con.rollback()
    assert rows(server, "SELECT count(*) FROM fail_t") == [(0,)]


def test_client_hanging_up_mid_copy_inserts_nothing_and_others_go_on(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE hang_t(a INTEGER, b VARCHAR)")
    other = psycopg.connect(server.dsn(), autocommit=True)
    sock = raw_connect(server.port)
    send(sock, b"Q", b"COPY hang_t FROM STDIN (FORMAT csv)\0")
    kind, body = read_until(sock, b"G")[-1]
    assert body[:3] == b"\x00\x00\x02"  # text, two columns
    send(sock, b"d", b"1,a\n2,b\n")
    sock.close()  # gone without CopyDone
    server.wait_for_log(r"queries=1 duration=\S+ client disconnected")
    assert other.execute("SELECT count(*) FROM hang_t").fetchone() == (0,)
    other.close()
    assert "internal error" not in server.log


def test_copy_errors_before_any_data(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE opt_t(a INTEGER)")
    cases = [("COPY no_such_table FROM STDIN", psycopg.errors.UndefinedTable),
             ("COPY opt_t FROM STDIN (FORMAT csv, BOGUS 1)", psycopg.errors.SyntaxError),
             ("COPY opt_t FROM STDIN (FORMAT csv, FORCE_QUOTE *)", psycopg.errors.FeatureNotSupported),
             ("COPY opt_t FROM STDIN (DELIMITER 'ab')", psycopg.errors.FeatureNotSupported),
             ("COPY opt_t FROM STDIN (FORMAT text, QUOTE '\"')", psycopg.errors.FeatureNotSupported),
             ("COPY opt_t FROM STDIN (FORMAT csv, FORCE_NOT_NULL (nope))", psycopg.errors.InvalidColumnReference)]
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        for sql, error in cases:
            with pytest.raises(error):
                with con.cursor().copy(sql):
                    pass
        assert con.execute("SELECT count(*) FROM opt_t").fetchone() == (0,)


def test_copy_while_another_client_copies(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE two_t(w INTEGER, i INTEGER)")

    def load(worker: int) -> None:
        with psycopg.connect(server.dsn(), autocommit=True) as con:
            with con.cursor().copy("COPY two_t FROM STDIN") as copy:
                for i in range(5000):
                    copy.write_row((worker, i))

    threads = [threading.Thread(target=load, args=(worker,)) for worker in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rows(server, "SELECT w, count(*) FROM two_t GROUP BY w ORDER BY w") == [(0, 5000), (1, 5000)]


def test_copy_options_header_match_where_force_null(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE optn_t(id INTEGER, s VARCHAR, t VARCHAR)")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with con.cursor().copy("COPY optn_t FROM STDIN (FORMAT csv, HEADER match, FORCE_NOT_NULL (s), "
                               "FORCE_NULL (t)) WHERE id > 1") as copy:
            copy.write(b'id,s,t\n1,,x\n2,,""\n3,"",y\n')
        assert con.execute("SELECT * FROM optn_t ORDER BY id").fetchall() == [(2, "", None), (3, "", "y")]
        with pytest.raises(psycopg.errors.BadCopyFileFormat, match='field 2: got "name", expected "s"'):
            with con.cursor().copy("COPY optn_t FROM STDIN (FORMAT csv, HEADER match)") as copy:
                copy.write(b"id,name,t\n9,a,b\n")
    assert rows(server, "SELECT count(*) FROM optn_t") == [(2,)]


def test_psql_script_with_inline_copy_data(server, tmp_path):  # noqa: F811
    script = tmp_path / "load.sql"
    script.write_text("CREATE OR REPLACE TABLE inline_t(a INTEGER, b VARCHAR);\n"
                      "COPY inline_t FROM STDIN;\n1\tone\n2\t\\N\n\\.\n"
                      "SELECT count(*) AS n, count(b) AS named FROM inline_t;\n")
    done = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(server.port), "-U", "tester", "-d", "shop", "-X", "-A",
                           "-v", "ON_ERROR_STOP=1", "-f", str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "COPY 2" in done.stdout and "n|named\n2|1" in done.stdout


def test_readme_copy_section_runs(server, tmp_path):  # noqa: F811
    """The README's COPY examples (psql \\copy in and out, psycopg's copy) against a served database."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("<!-- section: copy-tls -->")[1].split("<!-- /section: copy-tls -->")[0]
    commands = [line for line in section.split("```bash\n")[1].split("```")[0].splitlines() if line.startswith("psql ")]
    python = section.split("```py\n")[1].split("```")[0].replace("port=5433", f"port={server.port}")
    run(server, "CREATE OR REPLACE TABLE customers AS SELECT i AS id, 18 + i % 60 AS age, (18 + i % 60 > 50) AS churned "
                "FROM range(300) t(i)",
        "CREATE OR REPLACE MODEL churn PREDICT churned FROM (SELECT age, churned FROM customers) USING logistic "
        "WITH (epochs = 5, seed = 1)")
    (tmp_path / "customers.csv").write_text("id,age,churned\n" + "".join(f"{300 + i},{20 + i},false\n" for i in range(50)))
    for command in commands:
        args = shlex.split(command.replace("-p 5433", f"-p {server.port}").replace("-U me", "-U tester"))
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)
    scores = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(scores) == 1 + 350 and scores[0].startswith("id,")
    assert {line.rsplit(",", 1)[1] for line in scores[1:]} <= {"t", "f"}  # PREDICT's booleans as PostgreSQL spells them
    namespace: dict = {}
    exec(python.replace("user=me", "user=tester"), namespace)  # noqa: S102 - the README's own snippet
    assert [tuple(row) for row in namespace["rows"]] == [("0", "18"), ("1", "19"), ("2", "20")]
    assert rows(server, "SELECT age FROM customers WHERE id IN (1001, 1002) ORDER BY id") == [(42,), (57,)]


def test_cancel_request_during_copy_in_inserts_nothing(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE cancel_t(a INTEGER)")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with pytest.raises(psycopg.errors.QueryCanceled):
            with con.cursor().copy("COPY cancel_t FROM STDIN") as copy:
                copy.write(b"1\n2\n")
                con.cancel_safe()  # a CancelRequest on its own connection, answered before it returns
        assert con.execute("SELECT count(*) FROM cancel_t").fetchone() == (0,)


# -- long lines, counts and multi-statement queries (issue 11 review) ------------------------------


def test_copy_of_a_60_mb_field_loads_it_in_csv_and_text(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE long_t(id INTEGER, body VARCHAR, n INTEGER)")
    source = tmp_path / "long.csv"
    source.write_bytes(b"1," + b"x" * 60_000_000 + b",1\n")
    assert "COPY 1" in psql(server, f"\\copy long_t FROM '{source}' CSV").stdout
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with con.cursor().copy("COPY long_t FROM STDIN") as copy:
            copy.write(b"2\t" + b"y" * 60_000_000 + b"\t2\n")
        assert con.execute("SELECT id, length(body), n FROM long_t ORDER BY id").fetchall() == [
            (1, 60_000_000, 1), (2, 60_000_000, 2)]


def test_copy_of_a_long_line_among_many_short_ones_loads_every_row(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE mixed_t(id INTEGER, body VARCHAR, n INTEGER)")
    source = tmp_path / "mixed.txt"
    source.write_bytes(b"1\t" + b"x" * 8_500_000 + b"\t1\n"
                       + b"".join(b"%d\tabcdefghijklmnop\t%d\n" % (i, i) for i in range(2, 1_500_001)))
    assert "COPY 1500000" in psql(server, f"\\copy mixed_t FROM '{source}'").stdout
    assert rows(server, "SELECT count(*), max(length(body)), sum(n) FROM mixed_t") == [
        (1_500_000, 8_500_000, 1_500_000 * 1_500_001 // 2)]


def test_copy_error_on_a_long_line_shows_its_start_only(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE longbad_t(id INTEGER, body VARCHAR)")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with pytest.raises(psycopg.errors.BadCopyFileFormat) as shape:
            with con.cursor().copy("COPY longbad_t FROM STDIN") as copy:
                copy.write(b"1\tok\n2\t" + b"z" * 5_000_000 + b"\textra\n")
        assert "line 2" in str(shape.value) and len(str(shape.value)) < 1000 and "..." in str(shape.value)
    assert rows(server, "SELECT count(*) FROM longbad_t") == [(0,)]


def test_copy_rows_the_reader_skips_fail_instead_of_vanishing(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE blank_t(id INTEGER, name VARCHAR)", "INSERT INTO blank_t VALUES (0, 'kept')")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        with pytest.raises(psycopg.errors.BadCopyFileFormat) as lost:
            with con.cursor().copy("COPY blank_t FROM STDIN") as copy:
                copy.write(b"1\ta\n\n2\tb\n")
        assert "3 lines were sent but 2 rows were read" in str(lost.value)
    assert rows(server, "SELECT * FROM blank_t") == [(0, "kept")]


def test_a_failing_copy_rolls_back_the_whole_query_message(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE multi_t(id INTEGER, name VARCHAR, n INTEGER)")
    done = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(server.port), "-U", "tester", "-d", "shop", "-X", "-c",
                           "INSERT INTO multi_t VALUES (901,'y',1); COPY multi_t FROM STDIN; "
                           "INSERT INTO multi_t VALUES (902,'y',1)"],
                          input="bad\n\\.\n", capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "line 1" in done.stderr, done.stderr
    assert rows(server, "SELECT * FROM multi_t") == []
    done = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(server.port), "-U", "tester", "-d", "shop", "-X", "-c",
                           "INSERT INTO multi_t VALUES (901,'y',1); COPY multi_t FROM STDIN; "
                           "INSERT INTO multi_t VALUES (902,'y',1)"],
                          input="5\tz\t5\n\\.\n", capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert rows(server, "SELECT id FROM multi_t ORDER BY id") == [(5,), (901,), (902,)]


def test_copy_errors_speak_postgresql_not_mldb_internal_sql(server, tmp_path):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE words_t(id INTEGER, v DOUBLE, vec FLOAT[2])",
        "CREATE OR REPLACE VIEW words_v AS SELECT * FROM words_t", "INSERT INTO words_t VALUES (0, 0, [0, 0])")
    source = tmp_path / "w.csv"
    source.write_text("1,1\n")

    def failing(command: str) -> str:
        done = psql(server, command, check=False)
        assert done.returncode != 0
        assert "SELECT" not in done.stderr and "LINE" not in done.stderr, done.stderr
        return done.stderr

    assert 'column "nope" of relation "words_t" does not exist' in failing(f"\\copy words_t (id, nope) FROM '{source}' CSV")
    assert 'relation "nonexist" does not exist' in failing(f"\\copy nonexist FROM '{source}' CSV")
    assert 'relation "nonexist" does not exist' in failing("\\copy nonexist TO STDOUT")
    assert 'cannot copy to view "words_v"' in failing(f"\\copy words_v FROM '{source}' CSV")
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        for sql, data, error, words in [
                ("COPY words_t (id, nope) FROM STDIN", b"", psycopg.errors.UndefinedColumn, "nope"),
                ("COPY words_v FROM STDIN", b"", psycopg.errors.WrongObjectType, "view"),
                ("COPY words_t FROM STDIN (FORMAT csv)", b'1,2,"{1,2}"\n2,"3,{1,2}\n3,4,"{1,2}"\n',
                 psycopg.errors.BadCopyFileFormat, "unterminated CSV quoted field"),
                ("COPY words_t (id, v) FROM STDIN", b"1\t2\n2\t1e400\n", psycopg.errors.NumericValueOutOfRange,
                 'line 2, column v: "1e400" is out of range for type double precision'),
                ("COPY words_t (id, v) FROM STDIN (FORMAT csv, HEADER)", b"id,v\n1,1e300\n2,-Infinity\n3,-1e309\n",
                 psycopg.errors.NumericValueOutOfRange, 'line 4, column v: "-1e309" is out of range'),
                ("COPY words_t FROM STDIN", b"1\t2\t{1,2}\n2\t3\t{1,2,3}\n", psycopg.errors.InvalidTextRepresentation,
                 'line 2, column vec: invalid input value for type FLOAT[2]: "{1,2,3}"'),
        ]:
            with pytest.raises(error) as raised:
                with con.cursor().copy(sql) as copy:
                    copy.write(data)
            assert words in str(raised.value) and "[1,2,3]" not in str(raised.value), str(raised.value)
    assert rows(server, "SELECT id FROM words_t") == [(0,)]


def test_floats_read_as_postgresql_writes_them_in_select_and_copy(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE fl_t AS SELECT i, CASE WHEN i IN (4, 500) THEN 1234567 WHEN i IN (5, 501) "
                "THEN 1e6 ELSE i % 3 + 0.1 END::REAL AS r, CASE WHEN i = 0 THEN 3 WHEN i = 1 THEN 1e16 WHEN i = 2 "
                "THEN 1e-5 WHEN i = 3 THEN 'inf'::DOUBLE WHEN i IN (6, 502) THEN '-0'::DOUBLE WHEN i IN (4, 500) THEN 1.5e15 WHEN i IN (5, 501) THEN -1e15 "
                "ELSE i + 0.1 END AS d FROM range(1000) t(i)")
    expected = {0: ("0.1", "3"), 1: ("1.1", "1e+16"), 2: ("2.1", "1e-05"), 3: ("0.1", "Infinity"),
                 4: ("1.234567e+06", "1.5e+15"), 5: ("1e+06", "-1e+15"), 500: ("1.234567e+06", "1.5e+15"),
                 501: ("1e+06", "-1e+15"), 6: ("0.1", "-0"), 502: ("1.1", "-0"), 999: ("0.1", "999.1")}
    copied = psql(server, "COPY (SELECT i, r, d FROM fl_t ORDER BY i) TO STDOUT").stdout.splitlines()
    selected = psql(server, "\\pset format unaligned", "\\pset fieldsep '\\t'", "\\pset tuples_only on",
                    "SELECT i, r, d FROM fl_t ORDER BY i").stdout.splitlines()
    selected = [line for line in selected if line[:1].isdigit()]  # without psql's notes on the settings
    assert selected == copied  # the first 256 rows (per value) and the rest (whole columns) alike
    for i, (real, double) in expected.items():
        assert copied[i] == f"{i}\t{real}\t{double}", copied[i]
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        assert con.execute("SELECT r, d FROM fl_t WHERE i = 0").fetchone() == (0.1, 3.0)
        assert con.execute("SELECT r FROM fl_t WHERE i = 0", binary=True).fetchone()[0] == pytest.approx(0.1, abs=1e-7)
    assert rows(server, "SELECT 1e6::REAL::TEXT IS NOT NULL, 1e6::REAL")[0][1] == 1e6


def test_a_map_reads_the_same_in_select_and_copy(server):  # noqa: F811
    run(server, "CREATE OR REPLACE TABLE map_t AS SELECT i, MAP {false: 0.45, true: i + 0.5}::MAP(BOOLEAN, DOUBLE) AS m, "
                "MAP {'a': [1, 2], 'b': NULL}::MAP(VARCHAR, INTEGER[]) AS n FROM range(300) t(i)")
    copied = psql(server, "COPY (SELECT m, n FROM map_t ORDER BY i) TO STDOUT").stdout.splitlines()
    selected = psql(server, "\\pset format unaligned", "\\pset fieldsep '\\t'", "\\pset tuples_only on",
                    "SELECT m, n FROM map_t ORDER BY i").stdout.splitlines()
    assert [line for line in selected if line.startswith("{")] == copied
    assert copied[0] == "{false=0.45, true=0.5}\t{a=[1, 2], b=NULL}" and copied[299].startswith("{false=0.45, true=299.5}")
