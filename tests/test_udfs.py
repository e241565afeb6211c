"""Model UDFs from files: the shipped udfs/ examples, connect(udfs=...), and every bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

import mldb

UDFS = Path(__file__).resolve().parent.parent / "udfs"


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    path = tmp_path_factory.mktemp("udfs") / "udfs.db"
    connection = mldb.connect(str(path), udfs=[str(UDFS / "similarity.py")])
    yield connection
    connection.close()


def test_connect_loads_files_and_the_statement_lists_functions(con):
    assert con.execute("SELECT text_similarity('a', 'a')").fetchone()[0] == pytest.approx(1.0, abs=1e-5)
    rows = con.execute("LOAD UDFS FROM ?", [str(UDFS / "zero_shot.py")]).fetchall()
    assert rows == [("zero_shot", "VARCHAR, VARCHAR", "VARCHAR"), ("sentiment", "VARCHAR", "VARCHAR")]


def test_text_similarity_ranks_paraphrases_first(con):
    close, far, missing = con.execute(
        "SELECT text_similarity('cheap flights to paris', 'low-cost airline tickets to france'), "
        "text_similarity('cheap flights to paris', 'a recipe for sourdough bread'), "
        "text_similarity(NULL, 'x')").fetchone()
    assert close > far + 0.3 and missing is None


def test_zero_shot_classifies_clear_examples(con):
    con.execute(f"LOAD UDFS FROM '{UDFS / 'zero_shot.py'}'")
    con.execute("CREATE TABLE news(id INTEGER, body VARCHAR)")
    con.execute("""INSERT INTO news VALUES (1, 'The striker scored twice in the cup final'),
        (2, 'Parliament voted on the new election law'), (3, 'Knead the dough, then bake it for an hour'),
        (4, NULL)""")
    rows = con.execute("SELECT id, zero_shot(body, 'sports, politics, cooking') FROM news ORDER BY id").fetchall()
    assert rows == [(1, "sports"), (2, "politics"), (3, "cooking"), (4, None)]
    rows = con.execute("SELECT sentiment(t) FROM (VALUES ('I love it, wonderful and great!'), "
                       "('Terrible, I hate this awful thing.')) v(t)").fetchall()
    assert rows == [("positive",), ("negative",)]


def _write(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("import mldb\nimport pyarrow as pa\n\n" + body)
    return str(path)


def test_a_udf_that_raises_or_returns_the_wrong_length_names_itself(con, tmp_path):
    path = _write(tmp_path, "bad.py", '''
@mldb.udf(params=["INTEGER"], returns="INTEGER")
def explodes(x):
    raise ValueError("boom")

@mldb.udf(params=["INTEGER"], returns="INTEGER")
def too_short(x):
    return pa.array([1], pa.int32())
''')
    con.execute("LOAD UDFS FROM ?", [path])
    with pytest.raises(mldb.ProgrammingError, match="UDF explodes failed: ValueError: boom"):
        con.execute("SELECT explodes(i::INTEGER) FROM range(3) t(i)").fetchall()
    with pytest.raises(mldb.ProgrammingError, match="UDF too_short returned 1 values for 3 rows"):
        con.execute("SELECT too_short(i::INTEGER) FROM range(3) t(i)").fetchall()
    assert con.execute("SELECT 42").fetchone() == (42,)  # the connection stays usable


@pytest.mark.parametrize("body, message", [
    (None, "does not exist"),
    ("x = 1\n", "defines no UDFs"),
    ("raise RuntimeError('broken file')\n", "loading UDF file .* failed: RuntimeError: broken file"),
    ('@mldb.udf(params=["NOT_A_TYPE"], returns="INTEGER")\ndef f(x):\n    return x\n', "NOT_A_TYPE"),
])
def test_bad_files_are_refused_and_register_nothing(con, tmp_path, body, message):
    path = str(tmp_path / "missing.py") if body is None else _write(tmp_path, "file.py", body)
    functions = con.execute("SELECT count(*) FROM duckdb_functions()").fetchone()
    with pytest.raises(mldb.ProgrammingError, match=message):
        con.execute("LOAD UDFS FROM ?", [path])
    assert con.execute("SELECT count(*) FROM duckdb_functions()").fetchone() == functions


def test_loading_a_file_again_replaces_its_functions(con, tmp_path):
    path = _write(tmp_path, "v.py", '@mldb.udf(params=["INTEGER"], returns="INTEGER")\n'
                                    'def version_of(x):\n    return pa.compute.add(x, 1)\n')
    import pyarrow.compute  # noqa: F401  (the file uses pa.compute)

    con.execute("LOAD UDFS FROM ?", [path])
    assert con.execute("SELECT version_of(1)").fetchone() == (2,)
    Path(path).write_text(Path(path).read_text().replace("add(x, 1)", "add(x, 2)"))
    con.execute("LOAD UDFS FROM ?", [path])
    assert con.execute("SELECT version_of(1)").fetchone() == (3,)


def test_the_decorator_keeps_the_function_callable_in_python():
    import pyarrow as pa

    @mldb.udf(params=["DOUBLE"], returns="DOUBLE")
    def double(x):
        return pa.compute.multiply(x, 2)

    assert double(pa.array([1.0, 2.0])).to_pylist() == [2.0, 4.0]
    assert double.__mldb_udf__.params == ("DOUBLE",) and double.__mldb_udf__.returns == "DOUBLE"


def test_the_readme_examples_run(con, monkeypatch):
    import re

    from mldb.frontend import split_statements

    monkeypatch.chdir(UDFS.parent)
    text = (UDFS.parent / "README.md").read_text()
    part = text[text.index("<!-- section: udfs -->"):text.index("<!-- /section: udfs -->")]
    sql = re.search(r"```sql\n(.*?)```", part, flags=re.S).group(1)
    results = [_rows(con, statement.text) for statement in split_statements(sql)]
    assert results[2:] == [[("sports",)], [("positive",)], [(pytest.approx(0.7, abs=0.15),)]]


def _rows(con, sql: str):
    cursor = con.execute(sql)
    return cursor.fetchall() if cursor.description else None


def test_a_session_can_refuse_load_udfs(con):
    cursor = con.cursor()
    cursor._session.load_udfs_allowed = False  # what a server sets for its network clients
    with pytest.raises(mldb.ProgrammingError, match="not allowed") as caught:
        cursor.execute("LOAD UDFS FROM ?", [str(UDFS / "similarity.py")])
    assert caught.value.sqlstate == "42501"
