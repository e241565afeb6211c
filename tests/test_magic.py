"""%mldb / %%mldb in a real IPython shell: tables, status lines, <<, {name} parameters, errors."""

from __future__ import annotations

import re
from pathlib import Path

import polars
import pyarrow
import pytest
from IPython.core.interactiveshell import InteractiveShell

import mldb
from mldb.magic import MldbMagic, Plan, ResultTable, Status


@pytest.fixture
def ip():
    """The IPython shell with a fresh %mldb (its own per-kernel in-memory database)."""
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mldb")
    shell.register_magics(MldbMagic(shell=shell))
    yield shell
    shell.config.MldbMagic.max_rows = MldbMagic.max_rows.default_value  # %config outlives the test
    for name in ("x", "lo", "name", "con", "values", "returning", "min_age"):
        shell.user_ns.pop(name, None)


def run(ip, source: str):
    return ip.run_cell(source, store_history=False)


def ok(ip, source: str):
    result = run(ip, source)
    assert result.success, result.error_in_exec or result.error_before_exec
    return result.result


def failed(ip, source: str, capsys) -> tuple[Exception, str]:
    result = run(ip, source)
    assert not result.success
    return result.error_in_exec, capsys.readouterr().out


def test_load_ext_registers_line_and_cell_magic():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mldb")
    assert shell.find_line_magic("mldb") is not None
    assert shell.find_cell_magic("mldb") is not None


def test_result_is_a_capped_table_with_the_total(ip):
    ok(ip, "%mldb CREATE TABLE t AS SELECT range AS a, 'x' || range AS b FROM range(100)")
    table = ok(ip, "%mldb SELECT * FROM t ORDER BY a")
    assert isinstance(table, ResultTable)
    page = table._repr_html_()
    assert "100 rows, 20 shown" in page
    assert page.count("<tr>") == 22  # names, types, 20 rows
    assert "&quot;x19&quot;" in page and "&quot;x20&quot;" not in page
    assert ok(ip, "%mldb --max-rows 3 SELECT * FROM t").frame.height == 3
    ok(ip, "%config MldbMagic.max_rows = 5")
    assert "100 rows, 5 shown" in ok(ip, "%mldb SELECT * FROM t")._repr_html_()
    small = ok(ip, "%mldb SELECT * FROM t WHERE a < 2")
    assert small.note == "2 rows" and small.frame["b"].to_list() == ["x0", "x1"]
    empty = ok(ip, "%mldb SELECT * FROM t WHERE a < 0")
    assert empty.note == "0 rows" and empty.frame.columns == ["a", "b"]
    big = ok(ip, "%mldb SELECT range AS r FROM range(250000)")  # counted across several Arrow batches
    assert big.note == "250,000 rows, 5 shown" and big.frame["r"].to_list() == [0, 1, 2, 3, 4]


def test_statements_without_rows_show_a_status_line(ip):
    assert ok(ip, "%mldb CREATE TABLE t(a INTEGER)") == Status("OK, CREATE")
    assert ok(ip, "%mldb INSERT INTO t VALUES (1), (2), (3)") == Status("OK, 3 rows inserted")
    assert ok(ip, "%mldb UPDATE t SET a = a + 1 WHERE a > 1") == Status("OK, 2 rows updated")
    assert ok(ip, "%mldb DELETE FROM t WHERE a = 1") == Status("OK, 1 row deleted")
    assert repr(ok(ip, "%mldb CREATE TABLE u AS SELECT * FROM t")) == "OK, CREATE, 2 rows"


def test_cell_runs_its_statements_in_order_and_shows_the_last(ip):
    table = ok(ip, "%%mldb\nCREATE TABLE t(a INTEGER);\nINSERT INTO t VALUES (7);\nSELECT a * 2 AS b FROM t")
    assert table.frame.to_dicts() == [{"b": 14}]


def test_explain_shows_the_plan_as_text(ip):
    ok(ip, "%mldb CREATE TABLE t AS SELECT range AS a FROM range(10)")
    plan = ok(ip, "%mldb EXPLAIN SELECT a FROM t WHERE a > 1")
    assert isinstance(plan, Plan) and "Seq Scan" in repr(plan) and "Filters: a > 1" in repr(plan)
    assert plan._repr_html_().startswith("<pre>")


def test_store_result_in_a_variable(ip):
    ok(ip, "%mldb CREATE TABLE t AS SELECT range AS a FROM range(5)")
    assert ok(ip, "%%mldb x <<\nSELECT a FROM t ORDER BY a") is None
    assert isinstance(ip.user_ns["x"], polars.DataFrame) and ip.user_ns["x"]["a"].to_list() == [0, 1, 2, 3, 4]
    ok(ip, "%%mldb --pandas x <<\nSELECT a FROM t WHERE a > 2 ORDER BY a")
    assert type(ip.user_ns["x"]).__module__.startswith("pandas") and list(ip.user_ns["x"]["a"]) == [3, 4]
    ok(ip, "%mldb --arrow x << SELECT sum(a) AS s FROM t")
    assert isinstance(ip.user_ns["x"], pyarrow.Table) and ip.user_ns["x"].to_pylist() == [{"s": 10}]
    ok(ip, "%mldb SELECT 1 << 2 AS shifted")  # the << operator is SQL, not a store
    assert ok(ip, "%mldb SELECT 1 << 2 AS shifted").frame["shifted"].to_list() == [4]


def test_braces_bind_notebook_values_as_parameters(ip):
    ok(ip, "%mldb CREATE TABLE t AS SELECT range AS a, 'x' || range AS b FROM range(10)")
    ok(ip, "lo = 7")
    assert ok(ip, "%mldb SELECT a FROM t WHERE a >= {lo} ORDER BY a").frame["a"].to_list() == [7, 8, 9]
    ok(ip, "name = \"x1' OR '1'='1\"")  # an injection attempt stays a value
    assert ok(ip, "%mldb SELECT count(*) AS n FROM t WHERE b = {name}").frame["n"].to_list() == [0]
    ok(ip, "values = [1, 2]")
    assert ok(ip, "%mldb SELECT {values} AS v, { lo } + 1 AS w").frame.to_dicts() == [{"v": [1, 2], "w": 8}]
    kept = ok(ip, "%mldb SELECT '{lo}' AS s, {'k': 1} AS st -- {nope}")
    assert kept.frame.to_dicts() == [{"s": "{lo}", "st": {"k": 1}}]


def test_database_path_and_connection_objects(ip, tmp_path):
    path = tmp_path / "shop.db"
    assert ok(ip, f"%%mldb {path}\nCREATE TABLE t AS SELECT 42 AS a") == Status("OK, CREATE, 1 row")
    assert ok(ip, "%mldb SELECT a FROM t").frame["a"].to_list() == [42]  # the file stays current
    assert path.exists()
    ip.user_ns["con"] = mldb.connect()
    ok(ip, "%%mldb con\nCREATE TABLE only_here AS SELECT 1 AS b")
    assert ip.user_ns["con"].execute("SELECT b FROM only_here").fetchall() == [(1,)]
    ip.user_ns["con"].close()
    result = run(ip, "%mldb SELECT count(*) FROM only_here")  # closed: an error, not another database
    assert isinstance(result.error_in_exec, mldb.InterfaceError)
    ok(ip, f"%mldb --connect {path} SELECT count(*) FROM t")
    assert ok(ip, "%mldb SELECT a FROM t").frame["a"].to_list() == [42]


def test_transaction_spans_cells(ip):
    ok(ip, "%mldb CREATE TABLE t(a INTEGER)")
    ok(ip, "%mldb BEGIN")
    ok(ip, "%mldb INSERT INTO t VALUES (1)")
    ok(ip, "%mldb ROLLBACK")
    assert ok(ip, "%mldb SELECT count(*) AS n FROM t").frame["n"].to_list() == [0]


def test_sql_error_is_one_short_message_and_the_cell_fails(ip, capsys):
    error, shown = failed(ip, "%mldb SELEC 1", capsys)
    assert isinstance(error, mldb.ProgrammingError) and error.sqlstate == "42601"
    assert shown.splitlines() == [
        'ProgrammingError (SQLSTATE 42601): Parser Error: syntax error at or near "SELEC"',
        "LINE 1: SELEC 1", "        ^^^^^"]
    error, shown = failed(ip, "%%mldb\nSELECT * FROM nowhere", capsys)
    assert isinstance(error, mldb.ProgrammingError) and "nowhere" in shown and "Traceback" not in shown
    assert ok(ip, "%mldb SELECT 1 AS alive").frame["alive"].to_list() == [1]


def test_bad_input_changes_nothing(ip, capsys):
    ok(ip, "%mldb CREATE TABLE t(a INTEGER)")
    error, shown = failed(ip, "%mldb INSERT INTO t VALUES ({nope})", capsys)
    assert isinstance(error, mldb.ProgrammingError) and "'nope'" in shown
    error, shown = failed(ip, "%%mldb 1x <<\nINSERT INTO t VALUES (1)", capsys)
    assert "'1x' is not a valid Python variable name" in shown and "1x" not in ip.user_ns
    error, shown = failed(ip, "%%mldb for <<\nINSERT INTO t VALUES (1)", capsys)
    assert isinstance(error, mldb.ProgrammingError)
    error, shown = failed(ip, "%mldb --frobnicate SELECT 1", capsys)
    assert "unknown option --frobnicate" in shown
    assert ok(ip, "%mldb SELECT count(*) AS n FROM t").frame["n"].to_list() == [0]


def test_unopenable_database_keeps_the_current_one(ip, capsys, tmp_path):
    ok(ip, "%mldb CREATE TABLE t AS SELECT 1 AS a")
    not_a_folder = tmp_path / "notes.txt"  # no one, not even root, can create a file below a file
    not_a_folder.write_text("x")
    error, shown = failed(ip, f"%%mldb {not_a_folder}/shop.db\nCREATE TABLE u(a INTEGER)", capsys)
    assert isinstance(error, mldb.OperationalError) and "Traceback" not in shown
    assert len(shown.splitlines()) <= 3 and not_a_folder.read_text() == "x"
    error, shown = failed(ip, "%%mldb nothing_by_that_name\nSELECT 1", capsys)
    assert "unknown database 'nothing_by_that_name'" in shown
    assert ok(ip, "%mldb SELECT a FROM t").frame["a"].to_list() == [1]


def test_readme_notebook_snippets_run(ip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("<!-- section: jupyter -->")[1].split("<!-- /section: jupyter -->")[0]
    cells = re.findall(r"```ipython\n(.*?)```", section, flags=re.S)
    assert len(cells) >= 3
    results = [ok(ip, cell) for cell in cells]
    assert (tmp_path / "shop.db").exists()
    assert ip.user_ns["returning"].height == 143 and results[-1].frame["n"].to_list() == [288]


def test_braces_name_a_table_with_i_and_quote_it(ip, capsys):
    ok(ip, '%mldb CREATE TABLE "odd name" AS SELECT 1 AS a')
    ok(ip, "%mldb CREATE TABLE plain AS SELECT 2 AS a")
    ok(ip, "tbl = 'odd name'; col = 'a'; qualified = ('main', 'plain')")
    assert ok(ip, "%mldb SELECT {col!i} FROM {tbl!i}").frame["a"].to_list() == [1]
    assert ok(ip, "%mldb SELECT a FROM {qualified!i}").frame["a"].to_list() == [2]
    ok(ip, "evil = 'plain\"; DROP TABLE plain; --'")  # an injection attempt stays one (missing) name
    error, shown = failed(ip, "%mldb SELECT * FROM {evil!i}", capsys)
    assert isinstance(error, mldb.ProgrammingError) and "does not exist" in shown
    ok(ip, "number = 3")
    error, shown = failed(ip, "%mldb SELECT * FROM {number!i}", capsys)
    assert "needs a name" in shown
    error, shown = failed(ip, "%mldb SELECT {tbl!x}", capsys)
    assert "unknown conversion" in shown
    assert ok(ip, "%mldb SELECT count(*) AS n FROM plain").frame["n"].to_list() == [1]
    for name in ("tbl", "col", "qualified", "evil", "number"):
        ip.user_ns.pop(name)


def test_braces_in_options_and_views_become_safe_literals(ip):
    ok(ip, "%mldb CREATE TABLE t AS SELECT range::DOUBLE AS x, range % 2 = 0 AS y FROM range(40)")
    ok(ip, "ep = 3; lr = 0.05; kind = 'logistic'; cutoff = 10; label = \"it's\"")
    ok(ip, "%mldb CREATE MODEL m PREDICT y FROM t USING {kind} WITH (epochs = {ep}, lr = {lr})")
    shown = ok(ip, "%mldb SELECT algorithm, hyperparameters->>'epochs_run' AS e, hyperparameters->>'lr' AS lr "
                   "FROM mldb.model_versions WHERE model = 'm'").frame.to_dicts()
    assert shown == [{"algorithm": "logistic", "e": "3", "lr": "0.05"}]
    ok(ip, "%mldb CREATE VIEW v AS SELECT x, {label} AS l FROM t WHERE x < {cutoff}")  # no parameters in a view
    assert ok(ip, "%mldb SELECT count(*) AS n, min(l) AS l FROM v").frame.to_dicts() == [{"n": 10, "l": "it's"}]
    for name in ("ep", "lr", "kind", "cutoff", "label"):
        ip.user_ns.pop(name)


def test_cells_read_frames_of_the_notebook(ip, capsys):
    ok(ip, "import pandas as pd, polars as pl; people = pd.DataFrame({'name': ['ann', 'bob'], 'age': [31, 42]})")
    ok(ip, "ages = pl.DataFrame({'age': [42]})")
    table = ok(ip, "%%mldb\nSELECT name FROM people JOIN ages USING (age)")
    assert table.frame["name"].to_list() == ["bob"]
    assert ok(ip, "%mldb SELECT count(*) AS n FROM {people}").frame["n"].to_list() == [2]
    ok(ip, "%mldb CREATE TABLE kept AS FROM people")
    assert ok(ip, "%mldb DESCRIBE kept").frame["column_type"].to_list() == ["VARCHAR", "BIGINT"]
    ok(ip, "notaframe = 12")
    error, shown = failed(ip, "%mldb SELECT * FROM notaframe", capsys)
    assert isinstance(error, mldb.ProgrammingError) and "not suitable" in shown
    for name in ("pd", "pl", "people", "ages", "notaframe"):
        ip.user_ns.pop(name)


def test_readme_duckdb_habits_in_cells_run(ip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("<!-- section: jupyter-habits -->")[1].split("<!-- /section: jupyter-habits -->")[0]
    cells = re.findall(r"```ipython\n(.*?)```", section, flags=re.S)
    results = [ok(ip, cell) for cell in cells]
    assert results[1].frame["n"].to_list() == [8]
    assert ok(ip, '%mldb SELECT count(*) AS n FROM "visits 2024"').frame["n"].to_list() == [60]
    trained = ok(ip, "%mldb SELECT hyperparameters->>'epochs' AS e FROM mldb.model_versions WHERE model = 'back'")
    assert trained.frame["e"].to_list() == ["5"]
    for name in ("np", "pd", "visits", "table", "min_age", "epochs"):
        ip.user_ns.pop(name)


def test_a_value_out_of_range_for_a_step_is_an_mldb_error(ip, capsys):
    ip.user_ns["big"] = 10**30
    ok(ip, "%mldb CREATE TABLE tr AS SELECT range::DOUBLE AS x, (range % 2)::INT AS y FROM range(20)")
    error, out = failed(ip, "%%mldb\nCREATE MODEL m PREDICT y FROM tr WITH (epochs = {big})", capsys)
    assert isinstance(error, mldb.ProgrammingError) and error.sqlstate == "22023"  # checked before training
    assert "option epochs must be an integer in [1, 2147483647]" in out
    assert ok(ip, "%mldb SHOW MODELS").frame.height == 0  # nothing was created
    ip.user_ns.pop("big")


def test_braces_in_the_wrong_place_get_a_clear_error(ip, capsys):
    import pandas

    ip.user_ns.update(table="t", x=1, visits=pandas.DataFrame({"v": [1, 2]}))
    ok(ip, "%mldb CREATE TABLE t AS SELECT 1 AS a")
    error, out = failed(ip, "%mldb SELECT * FROM {table}", capsys)
    assert error.sqlstate == "42601" and "use {table!i} for a table or column name" in str(error)
    assert "use {table!i}" in out
    assert ok(ip, "%mldb SELECT * FROM {table!i}").frame["a"].to_list() == [1]
    error, out = failed(ip, "%mldb SELECT {{x}} AS y", capsys)
    assert isinstance(error, mldb.ProgrammingError) and "{x!i}" in str(error) and "double braces" in out
    error, _ = failed(ip, "%mldb SELECT {visits} AS y", capsys)
    assert isinstance(error, mldb.ProgrammingError) and "FROM {visits}" in str(error)
    assert ok(ip, "%mldb SELECT sum(v) AS s FROM t JOIN {visits} ON a = v").frame["s"].to_list() == [1]
    for name in ("table", "visits"):
        ip.user_ns.pop(name)


def test_a_stored_view_over_a_notebook_frame_is_refused(ip, capsys):
    import pandas

    ip.user_ns["hist"] = pandas.DataFrame({"a": [1, 2]})
    for cell in ("%mldb CREATE VIEW vdf AS SELECT * FROM hist", "%mldb CREATE VIEW vdf AS SELECT * FROM {hist}"):
        error, out = failed(ip, cell, capsys)
        assert isinstance(error, mldb.ProgrammingError) and error.sqlstate == "0A000"
        assert "CREATE TABLE hist AS SELECT" in out
    assert ok(ip, "%mldb SELECT count(*) AS n FROM duckdb_views() WHERE view_name = 'vdf'").frame["n"].to_list() == [0]
    ip.user_ns.pop("hist")
