"""The lifecycle's listeners (see ``mldb.lifecycle.feature``) and the facts it keeps.

- ``after_train``: inside the CREATE MODEL / TRAIN transaction, save the training
  data's statistics, its lineage and its fingerprint (and a copy with ``snapshot``).
- ``record_prediction``: from the PREDICT functions, once per Arrow batch. It only adds
  to the running statement's counters (a few microseconds per batch).
  A shadow version's batches (``mldb.models.shadow``) come with their comparison with
  the deployed version's outputs and are counted apart.
- ``flush_predictions``: when that statement's result is done, write one
  ``mldb.prediction_log`` row per (model, version) it called (and per shadow), and the sampled rows.
- ``source_changed`` / ``snapshot_query``: for SHOW VERSIONS and TRAIN ... FROM SNAPSHOT.
"""

from __future__ import annotations

import base64
import functools
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mldb import errors
from mldb.lifecycle import lineage, snapshots, stats
from mldb.lifecycle.drift import PREDICTION


def _translated(function):
    """DuckDB errors raised by a hook reach the user as mldb errors."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except duckdb.Error as error:
            raise errors.translate(error) from None

    return call


# -- training -------------------------------------------------------------------------------
@_translated
def after_train(session, model: str, version: int, train_table: pa.Table, features: list[dict],
                source_tables: list[str], options: dict) -> None:
    con = session.own_con  # (mldb's own writes of its catalog)
    if version == 1:  # a new model (or OR REPLACE): forget what an earlier one with this name left
        forget_model(session, model)
    rows = stats.profile(model, version, train_table, features)
    outputs = _training_predictions(session, model, version, train_table)
    if outputs is not None:
        extra = stats.column_stats(outputs) | {"feature": PREDICTION, "role": "prediction",
                                               "model": model, "version": version}
        rows = pa.concat_tables([rows, pa.Table.from_pylist([extra], schema=stats.SCHEMA)])
    con.execute("DELETE FROM mldb.feature_stats WHERE model = ? AND version = ?", [model, version])
    with snapshots.registered(con, rows) as name:
        con.execute(f"INSERT INTO mldb.feature_stats SELECT * FROM {name}")
    query = _training_query(con, model, version)
    lineage.record_training(con, model, version, list(source_tables) + (lineage.tables_read(query) if query else []))
    # (options were checked by mldb.models.train.OPTIONS: snapshot a bool, log_sample a fraction)
    snapshots.save(con, model, version, train_table, store=bool(options.get("snapshot")),
                   log_sample=options.get("log_sample"))
    lifecycle_state(session.database).sample_rates.pop(model, None)  # read again once committed


def _training_predictions(session, model: str, version: int, table: pa.Table) -> pa.Array | None:
    """The new version's outputs on its own training rows (the baseline of DRIFT's prediction row)."""
    from mldb.models.registry import load_model

    if table.num_rows == 0:
        return None
    outputs = load_model(session, f"{model}@{version}").predict(table)
    return outputs.combine_chunks() if isinstance(outputs, pa.ChunkedArray) else outputs


@_translated
def source_changed(session, model: str, version: int) -> bool | None:
    """Whether the training query now returns other rows (``None`` when the version has no record)."""
    query = _training_query(session.con, model, version)
    return snapshots.changed(session.con, model, version, query)


def _training_query(con, model: str, version: int) -> str | None:
    try:
        rows = con.execute("SELECT training_query FROM mldb.model_versions WHERE model = ? AND version = ?",
                           [model, version]).fetchall()
    except duckdb.CatalogException:  # the models catalog is not there
        return None
    return rows[0][0] if rows else None


@_translated
def sources(session, model: str, version: int) -> list[str]:
    """Where a version's training data came from, for DESCRIBE MODEL: ``['active', 'customers (via active)']``."""
    edges = session.con.execute(
        "SELECT source, via FROM mldb.lineage WHERE target = ? AND target_version = ? AND kind = 'training' "
        "ORDER BY rowid", [model, version]).fetchall()
    return [source if via is None else f"{source} (via {via})" for source, via in edges]


@_translated
def snapshot_query(session, model: str, version: int) -> str:
    return snapshots.snapshot_query(session.con, model, version)


@_translated
def forget_model(session, model: str) -> None:
    """Remove a dropped (or replaced) model's statistics, snapshots and lineage edges, those into it
    (training) and those out of it (predictions), so that a new model of the name starts clean (its log
    stays)."""
    con = session.own_con  # (mldb's own writes of its catalog)
    for (table,) in con.execute("SELECT table_name FROM mldb.snapshots WHERE model = ? AND stored",
                                [model]).fetchall():
        con.execute(f"DROP TABLE IF EXISTS mldb.{snapshots.quoted(table)}")
    for table in ("feature_stats", "snapshots"):
        con.execute(f"DELETE FROM mldb.{table} WHERE model = ?", [model])
    # (by kind: a table, or an EMBED model, of the same name keeps its own edges)
    con.execute("DELETE FROM mldb.lineage WHERE (target = ? AND kind = 'training') OR (source = ? AND kind = 'prediction')",
                [model, model])


# -- predictions --------------------------------------------------------------------------
_FOLD_EVERY = 64  # batches kept before their outputs are summarised (bounds memory, amortises the cost)


@dataclass
class _Calls:
    """What one (model, version) predicted during the running statement."""

    started_at: datetime
    rows: int = 0
    calls: int = 0
    seconds: float = 0.0
    outputs: list = field(default_factory=list)  # Arrow batches not yet summarised
    counts: dict = field(default_factory=dict)  # class -> count (labels)
    moments: np.ndarray = field(default_factory=lambda: np.zeros(3))  # n, sum, sum of squares (values)
    samples: list = field(default_factory=list)  # (inputs or None, outputs) Arrow pieces
    shadow_of: int | None = None  # a shadow's counters: the deployed version it was compared with
    compared: int = 0  # rows compared with the deployed version's outputs
    matches: int = 0  # ... whose labels were equal (classification)
    abs_diff: float = 0.0  # ... the sum of |shadow - served| (regression)
    regression: bool = False  # a shadow of values (mean_abs_diff), else of labels (agreement)
    errors: int = 0  # batches the shadow could not score
    error: str | None = None  # the first of their errors
    extra: dict = field(default_factory=dict)  # more for the log row's summary (a scale-out job: executor, workers)

    def compare(self, comparison) -> None:
        self.regression = comparison.regression
        self.compared += comparison.compared
        self.matches += comparison.matches
        self.abs_diff += comparison.abs_diff
        if comparison.error is not None:
            self.errors += 1
            self.error = self.error or comparison.error[:500]

    def fold(self) -> None:
        """Summarise the kept batches in one vectorised pass and let them go."""
        if not self.outputs:
            return
        outputs, self.outputs = pa.chunked_array(self.outputs), []
        if pa.types.is_struct(outputs.type) and outputs.type.get_field_index("prediction") >= 0:
            outputs = pc.struct_field(outputs, "prediction")  # the table form: (prediction, probability)
        if pa.types.is_floating(outputs.type):
            values = outputs.to_numpy()
            values = values[np.isfinite(values)]
            self.moments += (len(values), values.sum(), values @ values)
        elif pa.types.is_boolean(outputs.type):
            true = pc.sum(outputs).as_py() or 0
            self._add({"true": true, "false": len(outputs) - outputs.null_count - true})
        elif not pa.types.is_nested(outputs.type):  # PREDICT_PROBA's maps are counted, not summarised
            counted = pc.value_counts(outputs)  # classes as SQL prints them: true/false, 1, 'yes'
            labels = pc.cast(counted.field("values"), pa.string()).to_pylist()
            self._add(dict(zip(labels, counted.field("counts").to_pylist())))

    def to_report(self) -> dict:
        """These (folded) counters in plain JSON types, for a scale-out worker's piece report; the
        samples as base64 Arrow IPC."""
        self.fold()
        return {"started_at": self.started_at.isoformat(), "rows": self.rows, "calls": self.calls,
                "seconds": self.seconds, "counts": self.counts, "moments": [float(v) for v in self.moments],
                "samples": [_samples_to_text(inputs, outputs) for inputs, outputs in self.samples],
                "shadow_of": self.shadow_of, "compared": self.compared, "matches": self.matches,
                "abs_diff": self.abs_diff, "regression": self.regression, "errors": self.errors, "error": self.error}

    def merge(self, report: dict) -> None:
        """Add a worker's ``to_report()`` of the same (model, version) to these counters."""
        self.started_at = min(self.started_at, datetime.fromisoformat(report["started_at"]))
        self.rows += report["rows"]
        self.calls += report["calls"]
        self.seconds += report["seconds"]
        self._add(report["counts"])
        self.moments = self.moments + np.asarray(report["moments"], dtype=float)
        self.samples.extend(_samples_from_text(*pair) for pair in report["samples"])
        self.compared += report["compared"]
        self.matches += report["matches"]
        self.abs_diff += report["abs_diff"]
        self.regression = self.regression or report["regression"]
        self.errors += report["errors"]
        self.error = self.error or report["error"]

    def _add(self, counts: dict) -> None:
        for label, count in counts.items():
            if count:
                self.counts[label] = self.counts.get(label, 0) + count


def _samples_to_text(inputs: pa.Table | None, outputs: pa.Array) -> list:
    """A sample (inputs, outputs) as two base64 Arrow IPC streams (JSON can carry them)."""
    return [None if inputs is None else _ipc_text(inputs), _ipc_text(pa.table({"output": outputs}))]


def _samples_from_text(inputs: str | None, outputs: str) -> tuple:
    return (None if inputs is None else _ipc_table(inputs), _ipc_table(outputs).column("output").combine_chunks())


def _ipc_text(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode()


def _ipc_table(text: str) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(base64.b64decode(text))).read_all()


class LifecycleState:
    """Per database: the ``log_sample`` rate of each model, read from ``mldb.snapshots`` on first use;
    on a scale-out worker's database, the prediction tallies its statements handed over instead of
    writing their log rows (``reports``: the driver writes one row for the whole job)."""

    def __init__(self, database):
        self.database = database
        self.sample_rates: dict[str, float] = {}
        self.lock = threading.Lock()
        self.reports: list | None = None  # a scale-out worker's: (model, version, calls.to_report()) not yet taken

    def sample_rate(self, model: str) -> float:
        rate = self.sample_rates.get(model)
        if rate is None:
            rate = self.sample_rates[model] = _read_sample_rate(self.database, model)
        return rate

    def forget(self, session=None) -> None:
        self.sample_rates.clear()


def lifecycle_state(database) -> LifecycleState:
    return database.state("lifecycle")


def _read_sample_rate(database, model: str) -> float:
    cursor = database.root.cursor()
    try:
        rows = cursor.execute("SELECT log_sample FROM mldb.snapshots WHERE model = ? ORDER BY version DESC LIMIT 1",
                              [model]).fetchall()
    except duckdb.CatalogException:  # a read-only file mldb never wrote: no catalog
        return 0.0
    finally:
        cursor.close()
    return (rows[0][0] or 0.0) if rows else 0.0


_random = np.random.default_rng()


def record_prediction(execution, model, rows: int, seconds: float, outputs: pa.Array | None, inputs,
                      shadow=None) -> None:
    """Add one Arrow batch of predictions to the running statement's counters (a few microseconds).

    ``inputs()`` gives the feature columns as a zero-copy table; it is called only when
    the model samples its inputs (``WITH (log_sample = ...)``). A shadow's batch comes with its
    ``shadow.Comparison`` (``outputs`` None when it failed) and is neither sampled nor mixed with
    the counters of the same version served.
    """
    if shadow is not None:
        key = ("prediction", model.name, model.version, shadow.served_version)
        calls = execution.tally(key, lambda: _first_calls(execution, shadow.served_version))
        sample = None
    else:
        rate = lifecycle_state(execution.database).sample_rate(model.name)
        sample = _sample(rate, outputs, inputs()) if rate else None
        calls = execution.tally(("prediction", model.name, model.version), lambda: _first_calls(execution))
    with execution.lock:
        calls.rows += rows
        calls.calls += 1
        calls.seconds += seconds
        if shadow is not None:
            calls.compare(shadow)
        if outputs is None:
            return
        if calls.outputs and calls.outputs[0].type != outputs.type:
            calls.fold()  # PREDICT and PREDICT_PROBA of one model in one statement: summarise apart
        calls.outputs.append(outputs)
        if len(calls.outputs) >= _FOLD_EVERY:
            calls.fold()
        if sample is not None:
            calls.samples.append(sample)


def _first_calls(execution, shadow_of: int | None = None) -> "_Calls":
    """The counters of a (model, version) a statement calls for the first time; the
    statement then writes its log when it finishes (once, for all its models)."""
    if "prediction_log" not in execution.tallies:
        execution.tallies["prediction_log"] = True
        execution.on_finish(flush_predictions)
    return _Calls(_now(), shadow_of=shadow_of)


def _sample(rate: float, outputs: pa.Array, inputs: pa.Table | None):
    mask = pa.array(_random.random(len(outputs)) < rate)
    return (inputs.filter(mask) if inputs is not None else None, outputs.filter(mask))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def flush_predictions(execution) -> None:
    """Write one mldb.prediction_log row per (model, version) the statement called.

    Runs on a separate cursor of the root connection (the session's own connection may
    still hold the statement's result). Skipped on a read-only database.
    """
    pending = {(key[3] if len(key) > 3 else None, key[1], key[2]): calls
               for key, calls in list(execution.tallies.items()) if isinstance(key, tuple) and key[0] == "prediction"}
    database = execution.database
    if not pending or database.read_only or database.closed:
        return
    reports = lifecycle_state(database).reports
    if reports is not None:  # a scale-out worker: the driver logs the job's tallies
        with lifecycle_state(database).lock:
            reports.extend({"model": model, "version": version, **calls.to_report()}
                           for (_, model, version), calls in pending.items())
        return
    for calls in pending.values():
        calls.fold()
    from mldb.lifecycle import log

    cursor = database.root.cursor()
    try:
        log.write(cursor, pending, execution.text)
    except duckdb.Error as error:
        raise errors.translate(error) from None
    finally:
        cursor.close()


# -- scale-out: the workers' tallies, logged by the driver ---------------------------------------------------
def keep_reports(database) -> None:
    """Make ``database`` (a scale-out worker's) keep its statements' prediction tallies for the driver
    instead of writing ``mldb.prediction_log`` rows."""
    state = lifecycle_state(database)
    with state.lock:
        if state.reports is None:
            state.reports = []


def take_reports(database) -> list[dict]:
    """The tallies kept since the last call (``keep_reports``), as JSON-ready dicts."""
    state = lifecycle_state(database)
    with state.lock:
        taken = state.reports or []
        if state.reports is not None:
            state.reports = []
    return taken


def merge_reports(execution, reports: list[dict], extra: dict | None = None) -> None:
    """Add a piece's tallies (``take_reports`` on a worker) to the running statement's, under the keys
    its own PREDICT calls would use: the statement's flush then writes one row per (model, version)."""
    for report in reports:
        shadow_of = report.get("shadow_of")
        key = ("prediction", report["model"], report["version"]) + ((shadow_of,) if shadow_of is not None else ())
        calls = execution.tally(key, lambda served=shadow_of: _first_calls(execution, served))
        with execution.lock:
            calls.merge(report)
            if extra:
                calls.extra.update(extra)
