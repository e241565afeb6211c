"""The Arrow function behind EMBED, registered once per database.

``mldb_embed_<d>(text, model, execution) -> FLOAT[d]`` is what ``EMBED(text [, model])``
is rewritten to (d = the model's dimension; 384, 512, 768 and 1024 are registered up
front, others when a model of that size is first used; ``execution`` is the calling
statement's id, for its cancel flag and progress bar). Nothing heavy is imported here:
the body imports sentence-transformers on its first call.
"""

from __future__ import annotations

import weakref

import duckdb

from mldb import errors

COMMON_DIMENSIONS = (384, 512, 768, 1024)


def embed_function(dim: int) -> str:
    return f"mldb_embed_{int(dim)}"


def register(database) -> None:
    for dim in COMMON_DIMENSIONS:
        _register_embed(database, dim)


def ensure_embed_function(database, dim: int) -> str:
    """Register ``mldb_embed_<dim>`` if needed (a model of an unusual size) and return its name."""
    if dim not in COMMON_DIMENSIONS:
        try:
            _register_embed(database, dim)
        except duckdb.Error:
            pass  # already registered by an earlier statement
    return embed_function(dim)


def _register_embed(database, dim: int) -> None:
    ref = weakref.ref(database)

    def embed(texts, model, execution_id):
        from mldb.vectors.embedding import embed_arrow

        if len(texts) == 0:
            return embed_arrow(texts, None, dim)
        database = ref()
        execution = database.execution(execution_id[0].as_py()) if database is not None else None
        try:
            return embed_arrow(texts, model[0].as_py(), dim, execution)
        except errors.Error as error:
            raise errors.FunctionError(error) from None

    database.root.create_function(embed_function(dim), embed, None, f"FLOAT[{dim}]", type="arrow")
