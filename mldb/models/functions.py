"""The Arrow functions behind PREDICT, PREDICT_PROBA and EVALUATE, registered once per database.

DuckDB functions have fixed return types, so there is one function per result type;
the rewrite rules pick the one matching the model's target:

    mldb_predict_{varchar,double,bigint,boolean}(model, execution, f1, f2, ...)  -> the label / value
    mldb_predict_row_{...}(model, execution, f1, ...) -> STRUCT(prediction, probability)   (table form)
    mldb_predict_proba(model, execution, f1, ...)     -> MAP(VARCHAR, DOUBLE)
    mldb_explain_{...}(model, execution, top_k, f1, ...) -> STRUCT(prediction, baseline, contributions)
    mldb_evaluate_classification(model, LIST(VARCHAR) targets, LIST(MAP) probabilities) -> STRUCT(metrics)
    mldb_evaluate_regression(model, LIST(DOUBLE) targets, LIST(DOUBLE) predictions)      -> STRUCT(metrics)

``model`` is a name ('churn', resolved to the deployed version, in a view) or a pinned
'churn@2' (what a statement's plan chose). ``execution`` is the id of the statement that
calls (see ``mldb.execution``): its cancel flag is checked and its prediction log is
told about every batch. Each call gets a whole DuckDB vector as Arrow arrays and runs
one forward pass. The functions hold the database weakly: closing it frees them.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import weakref

from mldb import errors
from mldb.models import evaluate, explain
from mldb.models.registry import ARROW_OUTPUT, load_model

SQL_OUTPUT = {"varchar": "VARCHAR", "double": "DOUBLE", "bigint": "BIGINT", "boolean": "BOOLEAN"}
CLASSIFICATION_TYPE = ("STRUCT(accuracy DOUBLE, \"precision\" DOUBLE, recall DOUBLE, f1 DOUBLE, "
                       "roc_auc DOUBLE, log_loss DOUBLE, \"rows\" BIGINT)")
REGRESSION_TYPE = "STRUCT(mae DOUBLE, mse DOUBLE, rmse DOUBLE, r2 DOUBLE, \"rows\" BIGINT)"


def register(database) -> None:
    con, ref = database.root, weakref.ref(database)
    for suffix, sql_type in SQL_OUTPUT.items():
        _create(con, f"mldb_predict_{suffix}", _predictor(ref, "predict", ARROW_OUTPUT[suffix]), sql_type)
        row_type = f"STRUCT(prediction {sql_type}, probability DOUBLE)"
        _create(con, f"mldb_predict_row_{suffix}", _predictor(ref, "predict_rows", None), row_type)
        explained = f"STRUCT(prediction {sql_type}, baseline DOUBLE, contributions MAP(VARCHAR, DOUBLE))"
        _create(con, f"mldb_explain_{suffix}", _explainer(ref, ARROW_OUTPUT[suffix]), explained)
    _create(con, "mldb_predict_proba", _predictor(ref, "predict_proba", None), "MAP(VARCHAR, DOUBLE)")
    _create(con, "mldb_evaluate_classification", _classification(ref), CLASSIFICATION_TYPE)
    _create(con, "mldb_evaluate_regression", _regression(ref), REGRESSION_TYPE)


def _create(con, name: str, function, return_type: str) -> None:
    con.create_function(name, _keeping_errors(function), None, return_type, type="arrow",
                        null_handling="special", side_effects=True)


def _keeping_errors(function):
    """mldb errors raised inside DuckDB reach the user with their class and SQLSTATE."""

    def call(*arrays):
        try:
            return function(*arrays)
        except errors.Error as error:
            raise errors.FunctionError(error) from None

    return call


def _open(ref):
    database = ref()
    if database is None or database.closed:
        raise errors.InterfaceError("the database is closed")
    return database


def _model_ref(array) -> str:
    return array[0].as_py()


def _predictor(ref, method: str, output_type):
    """``fn(model, execution, *features)`` calling ``ModelVersion.<method>`` on the whole batch."""

    def predict(model_ref, execution_id, *arrays):
        if len(model_ref) == 0:
            return pa.array([], output_type or pa.null())
        started = time.perf_counter()
        database = _open(ref)
        execution = database.execution(execution_id[0].as_py())
        if execution is not None:
            execution.check()
        model = load_model(execution if execution is not None else database, _model_ref(model_ref))
        out = getattr(model, method)(list(arrays))
        if output_type is not None and out.type != output_type:
            out = out.cast(output_type)
        if execution is not None:
            _record(execution, model, len(model_ref), time.perf_counter() - started, out, arrays)
        return out

    return predict


def _explainer(ref, prediction_type):
    """``fn(model, execution, top_k, *features)``: EXPLAIN_PREDICT's prediction, baseline and contributions
    for the whole batch (``mldb.models.explain``); ``top_k`` 0 keeps every feature."""

    def explain_batch(model_ref, execution_id, top_k, *arrays):
        if len(model_ref) == 0:
            return explain.empty_rows(prediction_type)
        database = _open(ref)
        execution = database.execution(execution_id[0].as_py())
        if execution is not None:
            execution.check()
        source = execution if execution is not None else database
        model = load_model(source, _model_ref(model_ref))
        out = explain.explain_rows(source, model, list(arrays), top_k[0].as_py() or None)
        if out.type.field("prediction").type != prediction_type:
            prediction = out.field("prediction").cast(prediction_type)
            out = pa.StructArray.from_arrays([prediction, out.field("baseline"), out.field("contributions")],
                                             ["prediction", "baseline", "contributions"])
        return out

    return explain_batch


def _record(execution, model, rows: int, seconds: float, outputs, arrays) -> None:
    """Tell the features that keep a prediction log about this batch (the inputs are a zero-copy table)."""
    from mldb.features import each

    for listener in each("on_prediction"):
        listener(execution, model, rows, seconds, outputs,
                 lambda: pa.Table.from_arrays(list(arrays), names=model.feature_names))


def _one(array):
    """The single list value of a one-row aggregate argument (an empty list for NULL)."""
    value = array[0]
    return pa.array([], value.type.value_type) if not value.is_valid else value.values


def _classification(ref):
    def metrics(model_ref, targets, probabilities):
        model = load_model(_open(ref), _model_ref(model_ref))
        result = classification_metrics(model, _one(targets), _one(probabilities))
        return _struct([result], evaluate.CLASSIFICATION)

    return metrics


def classification_metrics(model, labels: pa.Array, maps: pa.MapArray) -> dict:
    """EVALUATE's classification metrics of ``model`` from the labels as text and its PREDICT_PROBA maps
    (also what a deployment policy compares versions with: mldb/models/policies.py)."""
    classes = pa.array(model.classes, pa.string())
    y = pc.fill_null(pc.index_in(labels, value_set=classes), -1).to_numpy(zero_copy_only=False)
    offsets = maps.offsets.to_numpy()
    proba = maps.items.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
    proba = np.asarray(proba, dtype=np.float64).reshape(len(labels), len(model.classes))
    known = y >= 0  # rows whose label the model never saw cannot be scored; they are left out
    if len(y) and not known.any():
        raise errors.DataError(
            f"EVALUATE: none of the {len(y)} labels of '{model.target}' is a class model '{model.name}' "
            f"knows ({', '.join(map(repr, model.classes[:10]))}{', ...' if len(model.classes) > 10 else ''}); "
            f"found e.g. {labels[0].as_py()!r}")
    return evaluate.classification(y[known], proba[known])


def _regression(ref):
    def metrics(model_ref, targets, predictions):
        result = regression_metrics(lambda: load_model(_open(ref), _model_ref(model_ref)), _one(targets),
                                    _one(predictions))
        return _struct([result], evaluate.REGRESSION)

    return metrics


def regression_metrics(model, targets: pa.Array, predictions: pa.Array) -> dict:
    """EVALUATE's regression metrics from the targets and PREDICT's values (as DOUBLE); ``model()`` gives
    the model, only needed to word an error."""
    y = np.asarray(targets.to_numpy(zero_copy_only=False), dtype=np.float64)
    predicted = np.asarray(predictions.to_numpy(zero_copy_only=False), dtype=np.float64)
    infinite = int(np.isinf(y).sum())
    if infinite:  # (as training refuses them; no error can be measured against them)
        raise errors.DataError(
            f"EVALUATE: target column '{model().target}' holds {infinite} infinite value"
            f"{'s' if infinite > 1 else ''} (inf or -inf), against which no error can be measured; filter "
            "them out (WHERE isfinite(...)); NaN counts as NULL", sqlstate="22003")
    known = ~np.isnan(y)  # NaN is NULL, as in training: the row is left out
    return evaluate.regression(y[known], predicted[known])


def _struct(rows: list[dict], names: tuple) -> pa.StructArray:
    columns = [pa.array([row[n] for row in rows], pa.int64() if n == "rows" else pa.float64()) for n in names]
    return pa.StructArray.from_arrays(columns, list(names))
