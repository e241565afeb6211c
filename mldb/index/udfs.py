"""The Arrow UDFs behind EMBED, registered once per database.

``mldb_embed_<d>(text, model) -> FLOAT[d]`` is what ``EMBED(text [, model])`` is rewritten
to (d = the model's dimension; 384, 512, 768 and 1024 are registered up front, others
when a model of that size is first used). Nothing heavy is imported here: the body
imports sentence-transformers on its first call.
"""

from __future__ import annotations

import duckdb

COMMON_DIMENSIONS = (384, 512, 768, 1024)


def embed_function(dim: int) -> str:
    return f"mldb_embed_{int(dim)}"


def register(con: duckdb.DuckDBPyConnection) -> None:
    for dim in COMMON_DIMENSIONS:
        _register_embed(con, dim)


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

