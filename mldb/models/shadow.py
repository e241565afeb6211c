"""Shadow deployments: ``DEPLOY MODEL m VERSION n AS SHADOW`` (SPEC section 11).

PREDICT / PREDICT_PROBA of a model's name serve its deployed version; when the model has a
shadow, the predict function also runs the shadow on the very Arrow batch it just scored and
compares the two outputs, so a challenger is measured on live traffic before it serves. What
the statement returns is the deployed version's output, always: the shadow's work is done after
it, and any error of the shadow's (a feature column the query does not supply, a bad value) is
counted, never raised.

How a call asks for a shadow (the model reference the rewrite writes into the SQL):

    'churn'      a view: the deployed version and its shadow, as cached when the view is read
    'churn@2+3'  a statement planned with PREDICT(churn): version 2 served, version 3 its shadow
    'churn@2'    pinned (PREDICT('churn@2'), EVALUATE): no shadow

A shadow is fed by name from the columns the deployed version is given, so it may have other
features than the deployed version (DEPLOY accepts it): one it lacks makes each batch a shadow
error. It must predict the same kind of output (labels or values). Plain DEPLOY MODEL clears it,
DROP MODEL drops it with the model; when a rollback deploys the shadow's own version, nothing is
shadowed. (EVALUATE in a view over an unpinned name calls the same function as PREDICT_PROBA and
is shadowed too; in a statement it is pinned and is not.)

The comparison of each batch (``Comparison``) goes to the ``on_prediction`` listeners with the
shadow's outputs; the prediction log (``mldb.lifecycle``) writes one row per statement for the
shadow with ``shadow_of``, ``agreement`` (classification: the share of rows whose labels equal
the served labels) and ``mean_abs_diff`` (regression: the mean of |shadow - served|).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mldb.models import registry


@dataclass
class Comparison:
    """One batch scored by a shadow: how many rows were compared and how they differed."""

    served_version: int
    regression: bool  # values compared (mean_abs_diff), else labels (agreement)
    compared: int = 0  # rows where both outputs are known
    matches: int = 0  # classification: equal labels
    abs_diff: float = 0.0  # regression: the sum of |shadow - served|
    error: str | None = None  # the shadow could not score the batch


@dataclass
class Unloaded:
    """A shadow version that could not be loaded, as far as the prediction log needs to know it."""

    name: str
    version: int
    feature_names: tuple = ()


def split(ref: str) -> tuple[str, int | None]:
    """'churn@2+3' -> ('churn@2', 3); any other reference -> (ref, None)."""
    served, plus, shadow = str(ref).partition("+")
    return (served, int(shadow)) if plus and shadow.strip().isdigit() else (str(ref), None)


def described(ref: str) -> str:
    """What EXPLAIN adds for a call with a shadow: ', shadow m@3 scores the same batches'."""
    served, shadow = split(ref)
    return "" if shadow is None else f", shadow {registry.parse_ref(served)[0]}@{shadow} scores the same batches"


def planned_ref(session, name: str, served: registry.ModelVersion) -> str:
    """The reference a statement's PREDICT(name) runs: the deployed version, with its shadow if it has one."""
    shadow = registry.shadow_version(session, name)
    return served.ref if shadow is None or shadow == served.version else f"{served.ref}+{shadow}"


def shadow_of(source, ref: str, planned: int | None, served: registry.ModelVersion) -> int | None:
    """The shadow version a call scores beside ``served``: the planned one, or for a view's unpinned name
    the cached one; never the served version itself (a rollback may deploy the shadow's version)."""
    if planned is None and registry.parse_ref(ref)[1] is None:
        planned = registry.shadow_version(source, served.name)
    return planned if planned is not None and planned != served.version else None


def score(execution, served: registry.ModelVersion, version: int, outputs, arrays) -> None:
    """Run shadow ``version`` on the batch ``served`` scored as ``outputs`` and tell the listeners."""
    from mldb.features import each

    started = time.perf_counter()
    comparison = Comparison(served.version, served.task == "regression")
    shadow, shadow_outputs = Unloaded(served.name, version), None
    try:
        shadow = registry.load_model(execution, f"{served.name}@{version}")
        table = pa.Table.from_arrays(list(arrays), names=served.feature_names)
        shadow_outputs = _compare(served, shadow, outputs, shadow.forward(table), comparison)
    except Exception as error:  # noqa: BLE001 - a shadow never fails the statement it shadows
        comparison.error = f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - started
    rows = len(outputs) if comparison.error is None else 0
    for listener in each("on_prediction"):
        listener(execution, shadow, rows, seconds, shadow_outputs, None, shadow=comparison)


def _compare(served, shadow, outputs, raw: np.ndarray, comparison: Comparison) -> pa.Array:
    """Fill ``comparison`` from the served outputs and the shadow's raw ones; return the shadow's outputs."""
    if served.task == "regression":
        mine = pa.array(raw, pa.float64())
        diff = np.abs(raw - _values(outputs))
        known = np.isfinite(diff)
        comparison.compared, comparison.abs_diff = int(known.sum()), float(diff[known].sum())
        return mine
    best = pa.array(raw.argmax(axis=1))
    if pa.types.is_map(outputs.type):  # PREDICT_PROBA: labels as the maps' keys (class names)
        mine = pa.array(shadow.classes, pa.string()).take(best)
        theirs = _argmax_labels(outputs, served)
    else:
        mine, theirs = shadow._labels(best), _prediction(outputs)
        if mine.type != theirs.type:
            mine, theirs = mine.cast(pa.string()), theirs.cast(pa.string())
    equal = pc.equal(mine, theirs)
    comparison.compared = len(equal) - equal.null_count
    comparison.matches = int(pc.sum(equal).as_py() or 0)
    return mine


def _prediction(outputs) -> pa.Array:
    """The labels or values of PREDICT (an array) or of the table form (a struct of prediction, probability)."""
    if pa.types.is_struct(outputs.type):
        return outputs.field("prediction")
    return outputs


def _values(outputs) -> np.ndarray:
    values = _prediction(outputs).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


def _argmax_labels(maps: pa.MapArray, model: registry.ModelVersion) -> pa.Array:
    """The most probable class of each PREDICT_PROBA map (all rows hold every class, in the model's order)."""
    k = len(model.classes)
    offsets = maps.offsets.to_numpy()
    proba = maps.items.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
    best = np.asarray(proba, dtype=np.float64).reshape(len(maps), k).argmax(axis=1)
    return pa.array(model.classes, pa.string()).take(pa.array(best))
