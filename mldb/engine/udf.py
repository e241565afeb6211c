"""Register mldb's Arrow UDFs on a DuckDB connection, once per database.

Each feature lists a registrar ``register(con)`` here by import path. Registrars must
stay cheap: the functions they register import torch, faiss or sentence-transformers
on their first call, not at registration. Functions registered on the root
connection are visible to all its cursors, and to views stored in the database file,
which is why a view that calls PREDICT works again after a reopen.
"""

from __future__ import annotations

import duckdb

from mldb.plan.rules import _load

REGISTRARS: tuple[str, ...] = (
    "mldb.models.udfs:register",
    "mldb.index.udfs:register",
    "mldb.lifecycle.udfs:register",
)


def register_builtin_functions(con: duckdb.DuckDBPyConnection) -> None:
    for registrar in map(_load, REGISTRARS):
        if registrar is not None:
            registrar(con)
