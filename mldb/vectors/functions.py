"""The Arrow function behind EMBED, registered once per database.

``mldb_embed_<d>(text, model, execution) -> FLOAT[d]`` is what ``EMBED(text [, model])``
is rewritten to (d = the model's dimension; 384, 512, 768 and 1024 are registered up
front, others when a model of that size is first used; ``execution`` is the calling
statement's id, for its cancel flag and progress bar). ``mldb_embed_query_<d>`` is the
same function for a constant text, marked volatile so that DuckDB never evaluates it while
planning (an EXPLAIN embeds nothing); the statement's operator replaces it with the vector
when it runs. Nothing heavy is imported here: the body imports sentence-transformers on
its first call.
"""

from __future__ import annotations

import weakref

import duckdb

from mldb import errors

COMMON_DIMENSIONS = (384, 512, 768, 1024)


def embed_function(dim: int, query: bool = False) -> str:
    return f"mldb_embed_query_{int(dim)}" if query else f"mldb_embed_{int(dim)}"


def register(database) -> None:
    for dim in COMMON_DIMENSIONS:
        _register_embed(database, dim)
        _register_embed(database, dim, query=True)


def ensure_embed_function(database, dim: int, query: bool = False) -> str:
    """Register ``mldb_embed_<dim>`` (or the query form) if needed (a model of an unusual
    size) and return its name."""
    if dim not in COMMON_DIMENSIONS:
        try:
            _register_embed(database, dim, query)
        except duckdb.Error:
            pass  # already registered by an earlier statement
    return embed_function(dim, query)


def _register_embed(database, dim: int, query: bool = False) -> None:
    """``query``: the form a constant text is planned with (``EMBED('plane tickets')``).
    It is marked as having side effects so that DuckDB never evaluates it while planning
    (an EXPLAIN would otherwise embed the text); the statement's operator replaces it
    with the vector before DuckDB runs it."""
    ref = weakref.ref(database)

    def embed(texts, model, execution_id):
        from mldb.vectors.embedding import canonical, embed_arrow

        if len(texts) == 0:
            return embed_arrow(texts, None, dim)
        database = ref()
        execution = database.execution(execution_id[0].as_py()) if database is not None else None
        try:
            if database is not None and database.file_roots is not None:  # (called by name, not through EMBED)
                canonical(model[0].as_py(), database.file_roots)
            return embed_arrow(texts, model[0].as_py(), dim, execution)
        except errors.Error as error:
            raise errors.FunctionError(error) from None

    database.root.create_function(embed_function(dim, query), embed, None, f"FLOAT[{dim}]", type="arrow",
                                  side_effects=query)
