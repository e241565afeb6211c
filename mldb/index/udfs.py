"""Arrow UDFs behind EMBED and the FAISS search, registered once per database.

- ``mldb_embed_<d>(text, model) -> FLOAT[d]``: what ``EMBED(text [, model])`` is rewritten
  to (d = the model's dimension; 384, 512, 768 and 1024 are registered up front, others
  when a model of that size is first used).
- ``mldb_faiss_search(build_id, version, query, k, allowed) -> STRUCT(faiss_key, faiss_distance)[]``:
  the top-k of one FAISS index, nearest first, what an indexed ``ORDER BY distance LIMIT k``
  and ``VECTOR_SEARCH`` are rewritten to (``allowed``: the keys a WHERE filter lets through,
  or NULL for all rows).

Nothing heavy is imported here: the bodies import sentence-transformers / faiss on first call.
"""

from __future__ import annotations

import duckdb

COMMON_DIMENSIONS = (384, 512, 768, 1024)
SEARCH_FUNCTION = "mldb_faiss_search"
SEARCH_TYPE = "STRUCT(faiss_key BIGINT, faiss_distance FLOAT)[]"


def embed_function(dim: int) -> str:
    return f"mldb_embed_{int(dim)}"


def register(con: duckdb.DuckDBPyConnection) -> None:
    for dim in COMMON_DIMENSIONS:
        _register_embed(con, dim)
    con.create_function(SEARCH_FUNCTION, _search, None, SEARCH_TYPE, type="arrow", side_effects=True)


def ensure_embed_function(con: duckdb.DuckDBPyConnection, dim: int) -> str:
    """Register ``mldb_embed_<dim>`` if needed (a model of an unusual size) and return its name."""
    if dim not in COMMON_DIMENSIONS:
        try:
            _register_embed(con, dim)
        except duckdb.Error:
            pass  # already registered by an earlier statement
    return embed_function(dim)


def _register_embed(con: duckdb.DuckDBPyConnection, dim: int) -> None:
    def embed(texts, model=None):
        from mldb.index.embed import DEFAULT_MODEL, embed_arrow

        name = DEFAULT_MODEL if model is None else model[0].as_py()
        return embed_arrow(texts, name, dim)

    con.create_function(embed_function(dim), embed, None, f"FLOAT[{dim}]", type="arrow")


def _search(build_id, version, query, k, allowed):
    from mldb.index.faiss import search_arrow

    return search_arrow(build_id, version, query, k, allowed)
