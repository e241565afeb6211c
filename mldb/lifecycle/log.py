"""Writing ``mldb.prediction_log`` (one row per model version a statement called) and samples.

A shadow's row (``mldb.models.shadow``) names the deployed version it shadowed in ``shadow_of``
and how close it came: ``agreement`` (classification: the share of compared rows whose labels
equal the served ones) or ``mean_abs_diff`` (regression); its summary counts the batches it
could not score (``shadow_errors``, with the first ``shadow_error``)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from mldb.lifecycle.snapshots import registered

_LITERALS = {TokenType.STRING, TokenType.NUMBER, TokenType.PLACEHOLDER, TokenType.PARAMETER,
             TokenType.NATIONAL_STRING, TokenType.HEX_STRING, TokenType.BIT_STRING}
_STATEMENT_CHARS = 2000

LOG_SCHEMA = pa.schema([
    ("model", pa.string()), ("version", pa.int32()), ("rows", pa.int64()), ("calls", pa.int32()),
    ("seconds", pa.float64()), ("started_at", pa.timestamp("us")), ("query_fingerprint", pa.string()),
    ("statement", pa.string()), ("summary", pa.string()), ("shadow_of", pa.int32()), ("agreement", pa.float64()),
    ("mean_abs_diff", pa.float64()),
])


def query_fingerprint(statement: str | None) -> str | None:
    """md5 of the statement's tokens with literals replaced by ``?``: the same query shape, the same print."""
    if not statement:
        return None
    from mldb.frontend.dialect import _DIALECT

    try:
        tokens = _DIALECT.tokenize(statement)
    except TokenError:  # an untokenizable text is fingerprinted as written
        return hashlib.md5(statement.encode()).hexdigest()[:16]
    shape = " ".join("?" if t.token_type in _LITERALS else t.text.upper() for t in tokens)
    return hashlib.md5(shape.encode()).hexdigest()[:16]


def summary(calls) -> str:
    return json.dumps(_outputs(calls) | _shadow(calls) | getattr(calls, "extra", {}))


def _outputs(calls) -> dict:
    if calls.counts:
        return {"counts": calls.counts}
    n, total, squares = calls.moments
    if not n:
        return {}
    mean = total / n
    return {"mean": mean, "std": float(np.sqrt(max(squares / n - mean * mean, 0.0))), "n": int(n)}


def _shadow(calls) -> dict:
    if calls.shadow_of is None:
        return {}
    shown = {"compared": calls.compared, "shadow_errors": calls.errors}
    return shown | ({"shadow_error": calls.error} if calls.error else {})


def _comparison(calls) -> tuple[float | None, float | None]:
    """(agreement, mean_abs_diff) of a shadow's row: the one its outputs measure (labels or values)."""
    if calls.shadow_of is None or not calls.compared:
        return None, None
    if calls.regression:
        return None, calls.abs_diff / calls.compared
    return calls.matches / calls.compared, None


def write(cursor, pending: dict, statement: str | None) -> None:
    fingerprint = query_fingerprint(statement)
    text = statement[:_STATEMENT_CHARS] if statement else None
    rows = [
        {"model": model, "version": version, "rows": calls.rows, "calls": calls.calls,
         "seconds": calls.seconds, "started_at": calls.started_at, "query_fingerprint": fingerprint,
         "statement": text, "summary": summary(calls), "shadow_of": calls.shadow_of,
         **dict(zip(("agreement", "mean_abs_diff"), _comparison(calls)))}
        for (_, model, version), calls in pending.items()
    ]
    with registered(cursor, pa.Table.from_pylist(rows, schema=LOG_SCHEMA)) as name:
        cursor.execute(
            "INSERT INTO mldb.prediction_log (model, version, rows, calls, seconds, started_at, logged_at, "
            "query_fingerprint, statement, summary, shadow_of, agreement, mean_abs_diff) "
            "SELECT model, version, rows, calls, seconds, started_at, now()::TIMESTAMP, query_fingerprint, "
            f"statement, summary::JSON, shadow_of, agreement, mean_abs_diff FROM {name}")
    for (_, model, version), calls in pending.items():
        for inputs, outputs in calls.samples:
            _write_samples(cursor, model, version, fingerprint, inputs, outputs)


def _write_samples(cursor, model: str, version: int, fingerprint, inputs: pa.Table | None, outputs) -> None:
    if not len(outputs):
        return
    columns = {"output": outputs}
    if inputs is not None and inputs.num_columns:
        batch = inputs.combine_chunks().to_batches()[0]
        columns["input"] = pa.StructArray.from_arrays(batch.columns, names=batch.schema.names)
    input_json = "to_json(input)" if "input" in columns else "NULL"
    with registered(cursor, pa.table(columns), "__mldb_samples") as name:
        cursor.execute(
            f"INSERT INTO mldb.prediction_samples SELECT ?, ?, now()::TIMESTAMP, ?, {input_json}, to_json(output)"
            f" FROM {name}", [model, version, fingerprint])
