"""DRIFT(model, (query)): compare new data with the statistics saved at training time.

One row per feature and statistic, ``feature, statistic, value, drifted, threshold``:

- ``psi``, the population stability index, for every numeric feature (over the ten
  training quantile bins plus a bin for NULL) and every categorical one (over the 20
  most frequent training values, "other" and NULL):
  ``sum((actual - expected) * ln(actual / expected))`` with empty bins counted as
  0.0001. Flagged when above ``psi_threshold`` (default 0.2; the usual reading is
  < 0.1 stable, 0.1-0.2 moderate, > 0.2 a significant shift).
- ``ks``, the two-sample Kolmogorov-Smirnov statistic, for numeric features: the
  largest gap between the new data's CDF and the training CDF (kept as 101
  percentiles, so it is exact to about 0.01). Flagged when above ``ks_threshold``
  (default 0.1) *and* its asymptotic p-value is below ``ks_alpha`` (default 0.05),
  so a small sample does not raise an alarm by chance.
- The row ``(prediction)`` compares the model's outputs on the new data with its
  outputs on the training data (PSI over classes, or PSI and KS for regression).

Free text is compared by its length; vector features are not compared. PSI needs
a few hundred rows on each side to be meaningful.
"""

from __future__ import annotations

import itertools

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mldb import errors
from mldb.lifecycle import stats
from mldb.options import Option, Schema

OPTIONS = Schema(
    "DRIFT",
    Option("psi_threshold", "number", 0.2, low=0),
    Option("ks_threshold", "number", 0.1, low=0, high=1),  # (the KS statistic lies in [0, 1])
    Option("ks_alpha", "number", 0.05, low=0, high=1),  # (a p-value)
)
PREDICTION = "(prediction)"
_EMPTY_BIN = 1e-4

SCHEMA = pa.schema([
    ("feature", pa.string()), ("statistic", pa.string()), ("value", pa.float64()),
    ("drifted", pa.bool_()), ("threshold", pa.float64()),
])


def thresholds(options: dict) -> dict:
    """DRIFT's ``name => value`` options checked, with the defaults of those not given."""
    return OPTIONS.complete(options)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two histograms over the same bins."""
    e = np.maximum(expected / max(expected.sum(), 1), _EMPTY_BIN)
    a = np.maximum(actual / max(actual.sum(), 1), _EMPTY_BIN)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(quantiles: np.ndarray, values: np.ndarray) -> float:
    """Largest gap between the empirical CDF of ``values`` and the CDF given by 101 percentiles."""
    x = np.sort(values)
    grid = np.union1d(x, quantiles)
    new_cdf = np.searchsorted(x, grid, side="right") / len(x)
    index = np.searchsorted(quantiles, grid, side="right") - 1
    train_cdf = np.where(index >= 0, stats.PERCENTILES[np.clip(index, 0, None)], 0.0)
    return float(np.max(np.abs(new_cdf - train_cdf)))


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    from scipy.special import kolmogorov  # lazy: scipy is heavy

    return float(kolmogorov(np.sqrt(n * m / (n + m)) * statistic)) if n and m else 1.0


def compare(saved: dict, array: pa.Array | pa.ChunkedArray, limits: dict) -> list[dict]:
    """Drift rows for one column: ``saved`` is its mldb.feature_stats row, ``array`` the new values."""
    if saved["kind"] not in ("numeric", "text", "categorical"):
        return []
    feature = saved["feature"]
    _, expected, actual, values = histograms(saved, array)
    rows = [_row(feature, "psi", psi(expected, actual), limits["psi_threshold"])]
    if saved["kind"] != "categorical" and saved["quantiles"] and len(values):
        statistic = ks(np.asarray(saved["quantiles"], dtype=float), values)
        trained = saved["count"] - saved["nulls"]
        drifted = statistic > limits["ks_threshold"] and ks_pvalue(statistic, len(values), trained) < limits["ks_alpha"]
        rows.append({**_row(feature, "ks", statistic, limits["ks_threshold"]), "drifted": drifted})
    return rows


def histograms(saved: dict, array) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Bin labels, training counts, new counts (the last bin is NULL) and the new finite numbers."""
    if saved["kind"] == "categorical":
        return _category_histograms(saved, array)
    try:
        values, missing = stats.numbers(array, saved["kind"])
    except errors.ProgrammingError:
        raise errors.ProgrammingError(f"DRIFT: feature '{saved['feature']}' was trained as {saved['type']}; "
                                      f"the query has {array.type}") from None
    edges = np.asarray(saved["bin_edges"] or [], dtype=float)
    expected = np.append(np.asarray(saved["bin_counts"] or [0], dtype=float), saved["nulls"])
    actual = np.append(stats.bin_counts(values, edges) if len(values) else np.zeros(len(edges) + 1), missing)
    bounds = ["-inf"] + [f"{edge:.3g}" for edge in edges] + ["inf"]
    labels = [f"[{low}, {high})" for low, high in itertools.pairwise(bounds)] + ["NULL"]
    return labels, expected, actual.astype(float), values


def _category_histograms(saved: dict, array):
    top = saved["top_values"] or []
    values, counts, nulls = stats.categories(array)
    slot = pc.fill_null(pc.index_in(values, value_set=pa.array(top, pa.string())), len(top))
    actual = np.bincount(slot.to_numpy(zero_copy_only=False), weights=counts.to_numpy(zero_copy_only=False),
                         minlength=len(top) + 1)
    expected = np.asarray((saved["top_counts"] or []) + [saved["other_count"] or 0, saved["nulls"]], dtype=float)
    return top + ["(other)", "NULL"], expected, np.append(actual, nulls), np.empty(0)


def _row(feature: str, statistic: str, value: float, threshold: float) -> dict:
    return {"feature": feature, "statistic": statistic, "value": value, "drifted": value > threshold,
            "threshold": threshold}


def evaluate(session, ref: str, query: str, options: dict) -> pa.Table:
    """``DRIFT(ref, (query), options...)``: run the query and compare it with ``ref``'s training data."""
    limits = thresholds(options)
    model, version, predict = _resolve(session, ref)
    return drift_rows(saved_stats(session.con, model, version), _read(session, query), predict, limits)


def saved_stats(con, model: str, version: int) -> list[dict]:
    """The version's mldb.feature_stats rows, in column order."""
    cursor = con.execute(
        "SELECT * FROM mldb.feature_stats WHERE model = ? AND version = ? ORDER BY rowid", [model, version])
    saved = [dict(zip([d[0] for d in cursor.description], row)) for row in cursor.fetchall()]
    if not saved:
        raise errors.ProgrammingError(
            f"DRIFT: model '{model}' version {version} has no training statistics (train it again to save them)")
    return saved


def _read(session, query: str) -> pa.Table:
    try:
        return session.con.sql(query).to_arrow_table()
    except duckdb.Error as error:
        raise errors.translate(error) from None


def _resolve(session, ref: str):
    """(name, version, predict function or None) of the deployed or pinned version."""
    from mldb.models.registry import load_model

    model = load_model(session, ref)
    return model.name, model.version, model.predict


def drift_rows(saved: list[dict], table: pa.Table, predict, limits: dict) -> pa.Table:
    """All drift rows: features in training order, then the prediction distribution.

    ``predict(table) -> Arrow array`` gives the model's outputs on the new rows (or is None).
    """
    features = [row for row in saved if row["role"] == "feature"]
    columns = _columns(features, table)
    rows = [r for row in features for r in compare(row, columns[row["feature"]], limits)]
    trained_outputs = next((row for row in saved if row["role"] == "prediction"), None)
    if trained_outputs is not None and predict is not None:
        inputs = pa.table({name: column for name, column in columns.items()})
        rows += compare({**trained_outputs, "feature": PREDICTION}, predict(inputs), limits)
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _columns(features: list[dict], table: pa.Table) -> dict:
    """The query's column for each feature (names match case-insensitively, as in SQL)."""
    names = {name.lower(): name for name in table.column_names}
    missing = [row["feature"] for row in features if row["feature"].lower() not in names]
    if missing:
        raise errors.ProgrammingError(
            f"DRIFT: the query lacks feature{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"it has: {', '.join(table.column_names)}")
    if table.num_rows == 0:
        raise errors.DataError("DRIFT: the query returned no rows; there is nothing to compare")
    return {row["feature"]: table.column(names[row["feature"].lower()]) for row in features}
