"""The mldb command in all three modes, run as a real subprocess."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

# the installed ``mldb`` entry point (console script) where there is one
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "mldb")
MLDB = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "mldb.cli"]


def run(args, stdin=None):
    return subprocess.run(MLDB + args, input=stdin, capture_output=True, text=True, timeout=120)


def test_command_mode_prints_aligned_table_and_persists(db_path):
    result = run([db_path, "-c", "CREATE TABLE t AS SELECT range AS n, 'item ' || range AS label FROM range(3); "
                                 "SELECT * FROM t ORDER BY n"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "CREATE" in lines[0]
    header = next(line for line in lines if "label" in line)
    assert header.index("label") > header.index("n")
    assert any("item 2" in line for line in lines)
    assert "(3 rows)" in result.stdout
    again = run([db_path, "-c", "SELECT count(*) AS c FROM t"])
    assert "3" in again.stdout


def test_command_mode_error_exit_status_and_duckdbs_whole_message(db_path):
    result = run([db_path, "-c", "SELECT * FROM missing"])
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error (ProgrammingError, SQLSTATE 42P01): Catalog Error: Table with name missing")
    at = lines.index("LINE 1: SELECT * FROM missing")  # the excerpt and caret, as DuckDB's CLI prints them
    assert lines[at + 1] == " " * len("LINE 1: SELECT * FROM ") + "^" * len("missing")


def test_script_on_stdin_goes_on_after_an_error_as_duckdb(db_path):
    script = ("CREATE TABLE s(a INTEGER);\nINSERT INTO s VALUES (1), (2);\nSELECT sum(a) AS total FROM s;\n"
              "SELECT broken FROM s;\nINSERT INTO s VALUES (100);\n")
    result = run([db_path], stdin=script)
    assert result.returncode == 1  # an error happened, but DuckDB's CLI reads stdin to its end
    assert "INSERT 2" in result.stdout and "total" in result.stdout and "INSERT 1" in result.stdout
    assert result.stderr.startswith("<stdin>:4: Error") and "broken" in result.stderr
    check = run([db_path, "-csv", "-c", "SELECT sum(a) AS s FROM s"])
    assert check.stdout == "s\n103\n"


@pytest.mark.parametrize("flags, prefix, failing", [
    (["-bail"], "", "SELECT broken;\n"),
    ([], ".bail on\n", "SELECT broken;\n"),
    (["-bail"], "", ".read {inner}\n"),
], ids=["flag", "dot-command", "flag-and-read"])
def test_bail_stops_stdin_at_the_first_error(tmp_path, flags, prefix, failing):
    inner = tmp_path / "inner.sql"
    inner.write_text("SELECT 1 AS one;\nSELECT broken;\n")
    result = run(["-csv", *flags], stdin=prefix + failing.format(inner=inner) + "SELECT 'after' AS w;\n")
    assert result.returncode == 1 and "broken" in result.stderr
    assert "after" not in result.stdout


def test_files_and_c_stop_at_their_first_error_as_duckdb(tmp_path):
    inner = tmp_path / "inner.sql"
    inner.write_text("SELECT 1 AS one;\nSELECT broken;\nSELECT 2 AS two;\n")
    on_stdin = run(["-csv"], stdin=f".read {inner}\nSELECT 'after' AS w;\n")  # the file stops, stdin goes on
    assert (on_stdin.returncode, on_stdin.stdout) == (1, "one\n1\nw\nafter\n")
    assert on_stdin.stderr.startswith(f"{inner}:2: Error")
    outer = tmp_path / "outer.sql"
    outer.write_text(f".read {inner}\nSELECT 'after' AS w;\n")  # a failed .read stops the file reading it
    nested = run(["-csv", "-f", str(outer), "-c", "SELECT 'next' AS n"])
    assert (nested.returncode, nested.stdout) == (1, "one\n1\n")
    commands = run(["-csv", "-c", "SELECT broken", "-c", "SELECT 'next' AS n"])
    assert (commands.returncode, commands.stdout) == (1, "")


def test_timing_flag(db_path):
    result = run([db_path, "--timing", "-c", "SELECT 1"])
    assert result.returncode == 0 and "Time:" in result.stdout


def test_default_database_is_in_memory(tmp_path):
    result = subprocess.run(MLDB + ["-c", "CREATE TABLE t(a INTEGER); SELECT count(*) FROM t"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and list(tmp_path.iterdir()) == []


def test_interactive_shell_multiline_and_errors(db_path, tmp_path):
    leader, follower = pty.openpty()
    env = dict(os.environ, HOME=str(tmp_path))
    process = subprocess.Popen(MLDB + [db_path], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    try:
        output = _read_until(leader, "mldb> ")
        os.write(leader, b"SELECT 40\n")
        output += _read_until(leader, "...> ")
        os.write(leader, b"  + 2 AS answer;\n")
        output += _read_until(leader, "mldb> ")
        os.write(leader, b"SELECT * FROM nowhere;\n")
        output += _read_until(leader, "mldb> ")
        os.write(leader, b".quit\n")
        process.wait(timeout=60)
    finally:
        process.kill()
        os.close(leader)
    assert "answer" in output and "42" in output
    assert "nowhere" in output and "ProgrammingError" in output
    assert process.returncode == 0
    assert (tmp_path / ".mldb_history").exists()


def _read_until(fd, marker: str, timeout: float = 60.0) -> str:
    data, deadline = b"", time.monotonic() + timeout
    while marker.encode() not in data:
        if time.monotonic() > deadline:
            pytest.fail(f"no {marker!r} in shell output: {data.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            data += os.read(fd, 4096)
    return data.decode(errors="replace")


# -- DuckDB's CLI conventions (issue 11): output modes, -f, stdin, dot commands ---------------------

SAMPLE = ("CREATE TABLE t AS SELECT * FROM (VALUES "
          "(1, 'héllo, \"w\"', 1.5::DOUBLE, DATE '2024-01-02', NULL::INT, [1, 2], {'a': 1, 'b': 'x'}), "
          "(2, NULL, 0.1::DOUBLE, NULL, 7, NULL, NULL)) v(id, name, f, d, n, l, s);")

# What DuckDB 1.5.6's own CLI prints for SAMPLE (`duckdb -MODE -c "SELECT * FROM t"`), byte for
# byte; "table" adds psql's row count, "tabs" and "duckbox" are DuckDB's `.mode tabs|duckbox`.
EXPECTED = {
    "csv": 'id,name,f,d,n,l,s\n1,"héllo, ""w""",1.5,2024-01-02,NULL,"[1, 2]","{\'a\': 1, \'b\': x}"\n'
           "2,NULL,0.1,NULL,7,NULL,NULL\n",
    "json": '[{"id":1,"name":"héllo, \\"w\\"","f":1.5,"d":"2024-01-02","n":null,"l":[1,2],"s":{"a":1,"b":"x"}},\n'
            '{"id":2,"name":null,"f":0.1,"d":null,"n":7,"l":null,"s":null}]\n',
    "jsonlines": '{"id":1,"name":"héllo, \\"w\\"","f":1.5,"d":"2024-01-02","n":null,"l":[1,2],"s":{"a":1,"b":"x"}}\n'
                 '{"id":2,"name":null,"f":0.1,"d":null,"n":7,"l":null,"s":null}\n',
    "markdown": "| id |    name    |  f  |     d      |  n   |   l    |        s         |\n"
                "|---:|------------|----:|------------|-----:|--------|------------------|\n"
                "| 1  | héllo, \"w\" | 1.5 | 2024-01-02 | NULL | [1, 2] | {'a': 1, 'b': x} |\n"
                "| 2  | NULL       | 0.1 | NULL       | 7    | NULL   | NULL             |\n",
    "line": "   id = 1\n name = héllo, \"w\"\n    f = 1.5\n    d = 2024-01-02\n    n = NULL\n    l = [1, 2]\n"
            "    s = {'a': 1, 'b': x}\n\n   id = 2\n name = NULL\n    f = 0.1\n    d = NULL\n    n = 7\n"
            "    l = NULL\n    s = NULL\n",
    "box": "┌────┬────────────┬─────┬────────────┬──────┬────────┬──────────────────┐\n"
           "│ id │    name    │  f  │     d      │  n   │   l    │        s         │\n"
           "├────┼────────────┼─────┼────────────┼──────┼────────┼──────────────────┤\n"
           "│ 1  │ héllo, \"w\" │ 1.5 │ 2024-01-02 │ NULL │ [1, 2] │ {'a': 1, 'b': x} │\n"
           "│ 2  │ NULL       │ 0.1 │ NULL       │ 7    │ NULL   │ NULL             │\n"
           "└────┴────────────┴─────┴────────────┴──────┴────────┴──────────────────┘\n",
    "list": "id|name|f|d|n|l|s\n1|héllo, \"w\"|1.5|2024-01-02|NULL|[1, 2]|{'a': 1, 'b': x}\n"
            "2|NULL|0.1|NULL|7|NULL|NULL\n",
    "tabs": "id\tname\tf\td\tn\tl\ts\n1\théllo, \"w\"\t1.5\t2024-01-02\tNULL\t[1, 2]\t{'a': 1, 'b': x}\n"
            "2\tNULL\t0.1\tNULL\t7\tNULL\tNULL\n",
    "table": "+----+------------+-----+------------+------+--------+------------------+\n"
             "| id |    name    |  f  |     d      |  n   |   l    |        s         |\n"
             "+----+------------+-----+------------+------+--------+------------------+\n"
             "| 1  | héllo, \"w\" | 1.5 | 2024-01-02 | NULL | [1, 2] | {'a': 1, 'b': x} |\n"
             "| 2  | NULL       | 0.1 | NULL       | 7    | NULL   | NULL             |\n"
             "+----+------------+-----+------------+------+--------+------------------+\n(2 rows)\n",
    "duckbox": "┌───────┬────────────┬────────┬────────────┬───────┬─────────┬──────────────────────────────┐\n"
               "│  id   │    name    │   f    │     d      │   n   │    l    │              s               │\n"
               "│ int32 │  varchar   │ double │    date    │ int32 │ int32[] │ struct(a integer, b varchar) │\n"
               "├───────┼────────────┼────────┼────────────┼───────┼─────────┼──────────────────────────────┤\n"
               "│     1 │ héllo, \"w\" │    1.5 │ 2024-01-02 │  NULL │ [1, 2]  │ {'a': 1, 'b': x}             │\n"
               "│     2 │ NULL       │    0.1 │ NULL       │     7 │ NULL    │ NULL                         │\n"
               "└───────┴────────────┴────────┴────────────┴───────┴─────────┴──────────────────────────────┘\n",
    "html": "<tr><th>id</th>\n<th>name</th>\n<th>f</th>\n<th>d</th>\n<th>n</th>\n<th>l</th>\n<th>s</th>\n</tr>\n"
            "<tr><td>1</td>\n<td>héllo, &quot;w&quot;</td>\n<td>1.5</td>\n<td>2024-01-02</td>\n<td>NULL</td>\n"
            "<td>[1, 2]</td>\n<td>{&#39;a&#39;: 1, &#39;b&#39;: x}</td>\n</tr>\n"
            "<tr><td>2</td>\n<td>NULL</td>\n<td>0.1</td>\n<td>NULL</td>\n<td>7</td>\n<td>NULL</td>\n<td>NULL</td>\n</tr>\n",
}


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cli") / "sample.db")
    result = run([path, "-c", SAMPLE])
    assert result.returncode == 0, result.stderr
    return path


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_output_mode_flag_prints_as_duckdb(sample_db, mode):
    result = run([sample_db, f"-{mode}", "-c", "SELECT * FROM t ORDER BY id"])
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == EXPECTED[mode]


def test_csv_flag_is_not_read_as_c_sv(sample_db):
    result = run([sample_db, "-csv", "-c", "SELECT id, f FROM t ORDER BY id"])
    assert result.stdout == "id,f\n1,1.5\n2,0.1\n"


def test_separator_header_and_nullvalue_flags(sample_db):
    result = run([sample_db, "-csv", "-noheader", "-separator", ";", "-nullvalue", "∅", "-c",
                  "SELECT id, name, n, 'a;b' AS x FROM t ORDER BY id"])
    assert result.stdout == '1;"héllo, ""w""";∅;"a;b"\n2;∅;7;"a;b"\n'
    tabs = run([sample_db, "-list", "-separator", "\\t", "-c", "SELECT id, f FROM t ORDER BY id"])
    assert tabs.stdout == "id\tf\n1\t1.5\n2\t0.1\n"


def test_json_types_as_duckdb_writes_them():
    result = run(["-json", "-c", "SELECT 12.5::DECIMAL(4,1) AS d, 3::HUGEINT AS h, true AS b, 'nan'::DOUBLE AS x, "
                                 "0.1::FLOAT AS g, TIMESTAMP '2024-01-01 10:00:00' AS ts, MAP {'k': 1} AS m, "
                                 "[1.5, NULL] AS l, '00000000-0000-0000-0000-000000000001'::UUID AS u, "
                                 "'{\"a\": [1]}'::JSON AS j"])
    assert result.stdout == ('[{"d":"12.5","h":"3","b":true,"x":"NaN","g":0.10000000149011612,'
                             '"ts":"2024-01-01 10:00:00","m":{"k":1},"l":[1.5,null],'
                             '"u":"00000000-0000-0000-0000-000000000001","j":{"a":[1]}}]\n')
    empty = run(["-json", "-c", "SELECT 1 AS a WHERE false"])
    assert empty.stdout == "[]\n"


def test_statements_without_rows_print_a_status_line_not_a_table():
    result = run(["-c", "SET threads = 2; BEGIN; CREATE TABLE x(a INTEGER); INSERT INTO x VALUES (1), (2); COMMIT"])
    assert result.stdout == "SET\nBEGIN\nCREATE\nINSERT 2\nCOMMIT\n"
    quiet = run(["-csv", "-c", "SET TimeZone = 'America/New_York'; "
                               "SELECT TIMESTAMPTZ '2024-01-01 10:00:00+00' AS t"])
    assert quiet.stdout == "t\n2024-01-01 05:00:00-05\n"  # no status lines in csv; the session's time zone


def test_command_output_is_never_cut():
    result = run(["-c", "SELECT range AS n FROM range(5000)"])
    assert result.returncode == 0
    assert "(5000 rows)" in result.stdout and "| 4999 " in result.stdout
    assert "not shown" not in result.stdout and "shown" not in result.stdout
    csv_rows = run(["-csv", "-c", "SELECT range AS n FROM range(5000)"]).stdout.splitlines()
    assert csv_rows == ["n"] + [str(n) for n in range(5000)]
    many = run(["-json", "-c", "SELECT range AS n FROM range(70000)"])  # more than one Arrow batch
    assert json.loads(many.stdout) == [{"n": n} for n in range(70000)]


def test_file_flag_runs_a_script_with_a_model(tmp_path, db_path):
    script = tmp_path / "train.sql"
    script.write_text(
        "-- a tiny model, trained and used from a script\n"
        ".mode csv\n"
        "CREATE TABLE people AS SELECT range AS age, range % 2 = 0 AS old FROM range(40);\n"
        "CREATE MODEL m PREDICT old FROM people USING logistic\n"
        "    WITH (epochs = 1, seed = 1);\n"
        "SELECT count(*) AS n FROM (SELECT PREDICT(m) AS p FROM people) WHERE p IS NOT NULL;\n"
        "SELECT name FROM mldb.models;\n")
    result = run([db_path, "-f", str(script)])
    assert (result.returncode, result.stderr) == (0, "")
    summary, trained, *rest = result.stdout.splitlines()  # csv: no status lines, results only
    assert summary == "model,version,task,algorithm,rows,metric,value,seconds"
    assert trained.startswith("m,1,binary,logistic,40,accuracy,")
    assert rest == ["n", "40", "name", "m"]
    again = run([db_path, "-csv", "-c", "SELECT PREDICT(m) IS NOT NULL AS ok FROM people LIMIT 1"])
    assert again.stdout == "ok\ntrue\n"


def test_error_in_a_script_names_file_line_and_statement(tmp_path, db_path):
    script = tmp_path / "broken.sql"
    script.write_text("CREATE TABLE s(a INTEGER);\nINSERT INTO s VALUES (1);\n\nSELECT a,\n       nope FROM s;\n"
                      "INSERT INTO s VALUES (100);\n")
    result = run([db_path, "-f", str(script)])
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{script}:4: Error (ProgrammingError, SQLSTATE 42703):") and "nope" in lines[0]
    at = lines.index("LINE 2:        nope FROM s")  # DuckDB's excerpt of the statement, with its caret
    assert lines[at + 1] == " " * len("LINE 2:        ") + "^^^^"
    assert run([db_path, "-csv", "-c", "SELECT sum(a) AS s FROM s"]).stdout == "s\n1\n"  # stopped there
    missing = run([db_path, "-f", str(tmp_path / "absent.sql")])
    assert missing.returncode == 1 and "absent.sql" in missing.stderr and "No such file" in missing.stderr


def test_sql_piped_on_stdin(sample_db):
    result = run(["-csv"], stdin="SELECT 1 AS a,\n 'x' AS b;\nSELECT 2 AS c")  # the last one needs no ';'
    assert (result.returncode, result.stdout) == (0, "a,b\n1,x\nc\n2\n")
    failing = run([sample_db], stdin="SELECT 1;\nSELECT * FROM nowhere;\nSELECT 3;\n")
    assert failing.returncode == 1 and failing.stderr.startswith("<stdin>:2: Error (ProgrammingError")


def test_mode_switches_within_one_session(sample_db):
    script = ".mode csv\nSELECT id FROM t ORDER BY id;\n.mode json\nSELECT id FROM t ORDER BY id;\n.mode\n" \
             ".headers off\n.mode list\nSELECT id, f FROM t ORDER BY id;\n.nullvalue -\n.separator ,\n" \
             "SELECT id, n FROM t ORDER BY id;\n"
    result = run([sample_db], stdin=script)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == ('id\n1\n2\n[{"id":1},\n{"id":2}]\ncurrent output mode: json\n'
                             "1|1.5\n2|0.1\n1,-\n2,7\n")


def test_read_runs_a_file_inside_a_session(tmp_path, sample_db):
    inner = tmp_path / "inner.sql"
    inner.write_text(".mode csv\nSELECT count(*) AS n FROM t;\n")
    result = run([sample_db], stdin=f".read {inner}\nSELECT 'after' AS w;\n")
    assert (result.returncode, result.stdout) == (0, "n\n2\nw\nafter\n")  # .read's .mode stays


def test_output_and_once_send_results_to_a_file(tmp_path, sample_db):
    out, once = tmp_path / "out.csv", tmp_path / "once.txt"
    script = (f".mode csv\n.output {out}\nSELECT id FROM t ORDER BY id;\nSELECT 'x' AS y;\n.output\n"
              f"SELECT 'back' AS z;\n.once {once}\nSELECT 1 AS one;\nSELECT 2 AS two;\n")
    result = run([sample_db], stdin=script)
    assert (result.returncode, result.stderr) == (0, "")
    assert out.read_text() == "id\n1\n2\ny\nx\n"
    assert once.read_text() == "one\n1\n"
    assert result.stdout == "z\nback\ntwo\n2\n"


def test_tables_hides_mldb_catalog_and_schema_prints_create(db_path):
    setup = ("CREATE TABLE people AS SELECT range AS age, range % 2 = 0 AS old FROM range(20);"
             "CREATE VIEW adults AS SELECT * FROM people WHERE age > 10;"
             "CREATE INDEX people_age ON people(age);"
             "CREATE MODEL m PREDICT old FROM people USING logistic WITH (epochs = 1)")
    assert run([db_path, "-c", setup]).returncode == 0
    result = run([db_path], stdin=".tables\n.tables peo%\n.schema people\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == ("adults  people\npeople\nCREATE TABLE people(age BIGINT, \"old\" BOOLEAN);\n"
                             "CREATE INDEX people_age ON people(age);\n")
    catalog = run([db_path, "-csv", "-noheader", "-c", "SELECT count(*) > 0 FROM duckdb_tables() "
                                                       "WHERE schema_name = 'mldb'"])
    assert catalog.stdout == "true\n"  # the catalog is there, only .tables leaves it out


def test_open_switches_to_another_database(tmp_path, db_path):
    other = tmp_path / "other.db"
    result = run([db_path], stdin=f"CREATE TABLE first_t(a INTEGER);\n.open {other}\n"
                                  "CREATE TABLE second_t(b INTEGER);\n.tables\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith("CREATE\nsecond_t\n")
    assert run([db_path, "-c", ".tables"]).stdout == "first_t\n"
    assert run([str(other), "-c", ".tables"]).stdout == "second_t\n"


def test_unknown_dot_command_is_an_error(sample_db):
    result = run([sample_db, "-csv"], stdin=".frobnicate\nSELECT 1 AS one;\n")
    assert result.returncode == 1 and result.stdout == "one\n1\n"  # stdin goes on, as in DuckDB
    assert "<stdin>:1: Error: unknown command '.frobnicate'" in result.stderr
    bad_mode = run([sample_db], stdin=".mode nonsense\n")
    assert bad_mode.returncode == 1 and "unknown mode 'nonsense'" in bad_mode.stderr
    assert "csv" in bad_mode.stderr


def test_help_lists_every_dot_command():
    from mldb.cli_commands import _COMMANDS

    result = run(["-c", ".help"])
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith(".")}
    assert set(_COMMANDS) - {".quit", ".header"} <= listed


def test_a_script_is_not_opened_as_a_database(tmp_path, db_path):
    script = tmp_path / "script.sql"
    script.write_text("SELECT 1;\n")
    result = run([str(script)])
    assert result.returncode == 1
    assert "not a DuckDB database" in result.stderr and f"-f {script}" in result.stderr
    assert script.read_text() == "SELECT 1;\n"  # untouched
    second = run([db_path, str(script)])
    assert second.returncode == 1 and f"mldb {db_path} -f {script}" in second.stderr
    assert not os.path.exists(db_path)
    as_sql = run([db_path, "SELECT 41 + 1 AS answer"])  # DuckDB's `duckdb DB SQL`
    assert "42" in as_sql.stdout


def test_shell_mode_switch_and_maxrows_on_a_terminal(tmp_path, db_path):
    import pexpect

    env = dict(os.environ, HOME=str(tmp_path))
    shell = pexpect.spawn(MLDB[0], [*MLDB[1:], db_path], env=env, encoding="utf-8", timeout=120,
                          dimensions=(40, 200))
    try:
        shell.expect_exact("mldb> ")
        shell.sendline(".mode csv")
        shell.expect_exact("mldb> ")
        shell.sendline("SELECT 7 AS seven;")
        shell.expect(r"seven\r\n7\r\n")
        shell.expect_exact("mldb> ")
        shell.sendline(".mode table")
        shell.expect_exact("mldb> ")
        shell.sendline(".maxrows 3")
        shell.expect_exact("mldb> ")
        shell.sendline("SELECT range AS n FROM range(100);")
        shell.expect(r"\(100 rows, 3 shown; \.maxrows 0 shows all\)")
        shown = shell.before
        shell.expect_exact("mldb> ")
        shell.sendline(f".output {tmp_path / 'all.txt'}")  # a file is never cut
        shell.expect_exact("mldb> ")
        shell.sendline("SELECT range AS n FROM range(100);")
        shell.expect_exact("mldb> ")
        shell.sendline(".output")
        shell.expect_exact("mldb> ")
        shell.sendline(".bogus")
        shell.expect_exact("unknown command '.bogus'")
        shell.expect_exact("mldb> ")  # the shell goes on
        shell.sendline(".quit")
        shell.expect(pexpect.EOF)
        shell.close()
    finally:
        if shell.isalive():
            shell.terminate(force=True)
    assert "| 2 " in shown and "| 3 " not in shown
    assert (tmp_path / "all.txt").read_text().endswith("| 99 |\n+----+\n(100 rows)\n")
    assert shell.exitstatus == 0


def test_a_closed_pipe_stops_quietly():
    process = subprocess.Popen(MLDB + ["-csv", "-c", "SELECT * FROM range(1000000)"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "range\n"
    process.stdout.close()  # as `mldb ... | head -1` does
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_readme_command_line_example_prints_what_it_shows():
    import shlex
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("<!-- section: cli -->")[1].split("<!-- /section: cli -->")[0]
    command, *expected = section.split("```console\n")[1].split("```")[0].splitlines()
    assert command.startswith("$ mldb ")
    result = run(shlex.split(command[len("$ mldb "):]))
    assert result.stdout.splitlines() == expected


def test_read_of_itself_stops_at_the_nesting_limit(tmp_path):
    script = tmp_path / "self.sql"
    script.write_text(f"SELECT 1 AS one;\n.read {script}\nSELECT 2 AS two;\n")
    result = run(["-csv", "-f", str(script)])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == (f"{script}:2: Error: .read: input nesting limit (25) reached reading '{script}'; "
                             "does a file .read itself?\n")
    assert result.stdout == "one\n1\n" * 25  # each level ran its first line, none its last


def test_a_script_not_in_utf8_is_a_clear_error(tmp_path):
    script = tmp_path / "bad8.sql"
    script.write_bytes(b"SELECT 1 AS one;\n\xff\xfe SELECT 2;\nSELECT 3;\n")
    message = "Error: not valid UTF-8: byte 0xff at byte offset 17; scripts are read as UTF-8\n"
    result = run(["-csv", "-f", str(script)])
    assert (result.returncode, result.stdout, result.stderr) == (1, "one\n1\n", f"{script}:2: {message}")
    read = run(["-csv"], stdin=f".read {script}\nSELECT 'after' AS w;\n")
    assert (read.returncode, read.stdout, read.stderr) == (1, "one\n1\nw\nafter\n", f"{script}:2: {message}")
    piped = subprocess.run(MLDB + ["-csv"], input=script.read_bytes(), capture_output=True, timeout=120)
    assert (piped.returncode, piped.stdout) == (1, b"one\n1\n")
    assert piped.stderr.decode() == f"<stdin>:2: {message}"
    bom = tmp_path / "bom.sql"
    bom.write_bytes(b"\xef\xbb\xbfSELECT 1 AS one;\r\n.mode json\r\nSELECT 2 AS two;\r\n")  # Windows' editors
    assert run(["-csv", "-f", str(bom)]).stdout == 'one\n1\n[{"two":2}]\n'


def test_csv_separator_of_any_length_as_duckdb():
    result = run(["-csv", "-separator", "::", "-c", "SELECT 1 AS a, 'x::y' AS \"b::c\", 'q\"' AS d, NULL AS e"])
    assert (result.returncode, result.stdout) == (0, 'a::"b::c"::d::e\n1::"x::y"::"q"""::NULL\n')
    several = run(["-csv", "-separator", "::", "-c", "SELECT range AS n, 'v' AS v FROM range(70000)"])
    assert several.stdout.splitlines()[-1] == "69999::v"  # more than one batch
    empty = run(["-csv", "-separator", "", "-c", "SELECT 1 AS a"])
    assert (empty.returncode, empty.stdout) == (1, "")
    assert empty.stderr == "Error: csv mode needs a separator of at least one character\n"
    dot = run(["-csv"], stdin=".separator ''\nSELECT 1 AS a;\n")
    assert dot.returncode == 1 and dot.stdout == "a\n1\n"
    assert dot.stderr == "<stdin>:1: Error: .separator: csv mode needs a separator of at least one character\n"


def test_dot_commands_that_cannot_write_or_read_say_so(tmp_path):
    once = run(["-csv"], stdin=".once /proc/version\nSELECT 1 AS a;\nSELECT 2 AS b;\n")
    assert once.returncode == 1 and "Traceback" not in once.stderr
    assert once.stderr.startswith("<stdin>:")
    assert "/proc/version" in once.stderr and once.stdout == "b\n2\n"
    folder = run(["-csv"], stdin=f".output {tmp_path}\n.read {tmp_path}\nSELECT 3 AS c;\n")
    assert folder.returncode == 1 and "Traceback" not in folder.stderr
    assert folder.stderr.count("Is a directory") == 2 and folder.stdout == "c\n3\n"


_BREAKING = "SELECT 'a' || chr(10) || 'b' AS \"x|y\", 'c' || chr(9) || 'd' || chr(13) || 'e' AS t, 'p|q' AS p"


@pytest.mark.parametrize("mode, expected", [
    ("box", "┌──────┬─────────┬─────┐\n│ x|y  │    t    │  p  │\n├──────┼─────────┼─────┤\n"
            "│ a\\nb │ c\\td\\re │ p|q │\n└──────┴─────────┴─────┘\n"),
    ("table", "+------+---------+-----+\n| x|y  |    t    |  p  |\n+------+---------+-----+\n"
              "| a\\nb | c\\td\\re | p|q |\n+------+---------+-----+\n(1 row)\n"),
    ("markdown", "| x\\|y |    t    |  p   |\n|------|---------|------|\n| a\\nb | c\\td\\re | p\\|q |\n"),
])
def test_grids_escape_line_breaks_tabs_and_markdown_pipes_as_duckdb(mode, expected):
    result = run([f"-{mode}", "-c", _BREAKING])  # duckbox (DuckDB's own renderer) writes \n \t \r so too
    assert (result.returncode, result.stdout) == (0, expected)


def test_json_writes_non_finite_floats_as_strings_so_it_stays_json():
    sql = ("SELECT 'inf'::DOUBLE AS a, '-inf'::FLOAT AS b, 'nan'::DOUBLE AS c, [1.5, 'inf'::DOUBLE] AS l, "
           "NULL::DOUBLE AS n, 2.5::DOUBLE AS f, 'Infinity' AS s")
    result = run(["-json", "-c", sql])
    assert result.stdout == ('[{"a":"Infinity","b":"-Infinity","c":"NaN","l":[1.5,"Infinity"],"n":null,'
                             '"f":2.5,"s":"Infinity"}]\n')
    json.loads(result.stdout, parse_constant=lambda word: pytest.fail(f"not JSON: {word}"))
    lines = run(["-jsonlines", "-c", "SELECT 'nan'::DOUBLE AS c"])
    assert lines.stdout == '{"c":"NaN"}\n'
