"""The vectors feature: EMBED, FAISS indexes kept in step with their tables, VECTOR_SEARCH, LOAD UDFS."""

from __future__ import annotations

from mldb.features import Feature
from mldb.frontend.vectors import CreateFaissIndex, DropFaissIndex, LoadUdfs
from mldb.vectors import functions, maintenance, rules, statements, store

FEATURE = Feature(
    name="vectors",
    rules=(rules.rewrite_vector_search, rules.rewrite_embed),
    statements={
        CreateFaissIndex: statements.create_index,
        DropFaissIndex: statements.drop_index,
        LoadUdfs: statements.load_udfs,
    },
    register_functions=functions.register,
    make_state=store.VectorState,
    on_write=maintenance.on_write,
    on_commit=maintenance.on_commit,
    on_rollback=maintenance.on_rollback,
)
