"""The model registry: reading versions from ``mldb.model_versions`` and a per-process model cache.

``load_model(session_or_database, "churn" | "churn@2")`` returns a ``ModelVersion``
whose ``predict`` / ``predict_proba`` / ``predict_rows`` take Arrow data and return
Arrow arrays; the PREDICT functions and other features (DRIFT) use the same object.

Loaded versions and the deployed (and shadow) version of each name are cached in the
database's ``ModelCache`` (``database.state("models")``), which dies with the database;
``invalidate`` is called by TRAIN / DEPLOY / DROP, and a rollback empties it.
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from mldb import errors
from mldb.models import algorithms, features, inference


class ModelCache:
    """Per database: model versions loaded (with their weights) and each name's deployed version.

    ``resolved`` and ``loaded`` hold what is committed, shared by every session. A session
    inside a transaction reads and writes its own ``Overlay`` instead (its snapshot and its
    uncommitted TRAIN / DEPLOY / DROP must not be served to anyone else); the overlay is
    dropped when the transaction ends, and a commit forgets the names it changed.
    """

    def __init__(self, database=None):
        self.lock = threading.Lock()
        self.resolved: dict[str, int] = {}  # name -> deployed version
        self.shadows: dict[str, int | None] = {}  # name -> shadow version (None: no shadow)
        self.loaded: dict[tuple[str, int], ModelVersion] = {}
        self.overlays: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # session -> Overlay

    def forget(self, name: str | None = None) -> None:
        with self.lock:
            if name is None:
                self.resolved.clear()
                self.shadows.clear()
                self.loaded.clear()
                return
            self.resolved.pop(name, None)
            self.shadows.pop(name, None)
            for key in [key for key in self.loaded if key[0] == name]:
                del self.loaded[key]

    def overlay(self, session, create: bool = False) -> "Overlay | None":
        """The open transaction's own cache for ``session`` (``None`` outside a transaction)."""
        if session is None or not getattr(session, "in_transaction", False):
            return None
        with self.lock:
            overlay = self.overlays.get(session)
            if overlay is None and create:
                overlay = self.overlays[session] = Overlay()
            return overlay

    def end_transaction(self, session, committed: bool) -> None:
        with self.lock:
            overlay = self.overlays.pop(session, None)
        if committed and overlay is not None:  # (a rollback only drops the overlay: the shared
            for name in overlay.changed:      # cache never held what the transaction read or wrote)
                self.forget(name)

    def close(self) -> None:
        self.forget()
        self.overlays.clear()


@dataclass
class Overlay:
    """What one session's open transaction resolved and loaded, and the models it changed."""

    resolved: dict = field(default_factory=dict)  # name -> deployed version (None: dropped)
    shadows: dict = field(default_factory=dict)  # name -> shadow version (None: none)
    loaded: dict = field(default_factory=dict)  # (name, version) -> ModelVersion
    changed: set = field(default_factory=set)


def forget_all(session) -> None:
    """After a rollback: a version read in the transaction may no longer exist."""
    _cache(session).end_transaction(session, committed=False)


def forget_committed(session) -> None:
    """After a commit: the models the transaction changed are read again from the catalog."""
    _cache(session).end_transaction(session, committed=True)


_VERSION_COLUMNS = ("version, algorithm, task, target, target_type, classes, hyperparameters, features, "
                    "target_encoder, metrics, created_at, weights")


@dataclass
class ModelVersion:
    name: str
    version: int
    algorithm: str
    task: str  # 'binary' | 'multiclass' | 'regression'
    target: str
    target_type: str
    classes: list | None
    hyperparameters: dict
    features: list[dict]
    target_encoder: dict
    metrics: dict
    created_at: object
    weights: bytes = field(repr=False)
    _module: object = field(default=None, repr=False)
    _encoder: object = field(default=None, repr=False)
    _network: object = field(default=None, repr=False)
    _booster: object = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.features]

    @property
    def output(self) -> str:
        """The PREDICT result type: 'double' | 'boolean' | 'bigint' | 'varchar'."""
        return output_of(self.task, self.target_type)

    @property
    def module(self):
        if self._module is None:
            self._module = algorithms.load(self.hyperparameters, self.weights)
        return self._module

    @property
    def network(self) -> inference.Network:
        if self._network is None:
            self._network = inference.Network(self.module)
        return self._network

    @property
    def booster(self):
        """A lightgbm model's ``lightgbm.Booster``, read from its text model once."""
        if self._booster is None:
            from mldb.models import boosting

            self._booster = boosting.load(self.weights)
        return self._booster

    @property
    def encoder(self) -> features.Encoder | features.TreeEncoder:
        if self._encoder is None:
            form = features.TreeEncoder if self.algorithm == "lightgbm" else features.Encoder
            self._encoder = form(self.name, self.features)
        return self._encoder

    # -- vectorized prediction ------------------------------------------------------------
    def forward(self, data) -> np.ndarray:
        """Raw outputs: class probabilities (n, k) or values (n,) in the target's units."""
        arrays = self._arrays(data)
        if self.algorithm == "lightgbm":
            from mldb.models import boosting

            return boosting.predict(self, arrays)
        import torch

        out = self.network(torch.from_numpy(self.encoder(arrays)))
        with torch.inference_mode():  # (copies: ``out`` is the network's buffer, reused on the next call)
            if self.task != "regression":
                return torch.softmax(out.double(), dim=1).numpy()
            values = out[:, 0].numpy().astype(np.float64)
        values *= self.target_encoder["std"]
        values += self.target_encoder["mean"]
        return values

    def predict(self, data) -> pa.Array:
        out = self.forward(data)
        if self.task == "regression":
            return pa.array(out, pa.float64())
        return self._labels(out.argmax(axis=1))

    def predict_proba(self, data) -> pa.MapArray:
        proba = self._proba(data)
        rows, k = proba.shape
        offsets = pa.array(np.arange(0, rows * k + 1, k, dtype=np.int32))
        keys = pa.array(np.tile(np.asarray(self.classes, dtype=object), rows), pa.string())
        return pa.MapArray.from_arrays(offsets, keys, pa.array(proba.reshape(-1), pa.float64()))

    def predict_rows(self, data) -> pa.StructArray:
        """``{prediction, probability}`` per row (probability NULL for regression)."""
        out = self.forward(data)
        if self.task == "regression":
            prediction, probability = pa.array(out, pa.float64()), pa.nulls(len(out), pa.float64())
        else:
            best = out.argmax(axis=1)
            prediction = self._labels(best)
            probability = pa.array(out[np.arange(len(best)), best].astype(np.float64))
        return pa.StructArray.from_arrays([prediction, probability], ["prediction", "probability"])

    def _proba(self, data) -> np.ndarray:
        if self.task == "regression":
            raise errors.ProgrammingError(f"PREDICT_PROBA: model '{self.name}' is a regression model; "
                                          "use PREDICT for its value")
        return self.forward(data).astype(np.float64)

    def _labels(self, index: np.ndarray) -> pa.Array:
        labels = pa.array(self.classes, pa.string()).take(pa.array(index))
        return labels.cast(ARROW_OUTPUT[self.output])

    def _arrays(self, data) -> list:
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            missing = [n for n in self.feature_names if n not in data.schema.names]
            if missing:
                raise errors.ProgrammingError(missing_features(self, missing, data.schema.names))
            return [data.column(n) for n in self.feature_names]
        arrays = list(data)
        if len(arrays) != len(self.features):
            raise errors.ProgrammingError(
                f"model '{self.name}' takes {len(self.features)} features ({', '.join(self.feature_names)}); "
                f"got {len(arrays)} arguments")
        return arrays


ARROW_OUTPUT = {"double": pa.float64(), "boolean": pa.bool_(), "bigint": pa.int64(), "varchar": pa.string()}
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT", "UHUGEINT", "INT1", "INT2", "INT4", "INT8"}


def output_of(task: str, target_type: str) -> str:
    if task == "regression":
        return "double"
    if target_type.upper() == "BOOLEAN":
        return "boolean"
    if target_type.upper() in _INTEGER_TYPES:
        return "bigint"
    return "varchar"


def missing_features(model: ModelVersion, missing: list[str], found: list[str]) -> str:
    by_name = {feature["name"]: feature for feature in model.features}
    needed = ", ".join(f"'{n}' ({by_name[n]['type']})" for n in missing)
    plural = "column" if len(missing) == 1 else "columns"
    return f"model '{model.name}' needs {plural} {needed}; the query has: {', '.join(found) or 'no columns'}"


# -- names -----------------------------------------------------------------------------
def parse_ref(ref: str) -> tuple[str, int | None]:
    """'churn' -> ('churn', None); 'churn@2' -> ('churn', 2)."""
    name, at, version = str(ref).strip().partition("@")
    if not at:
        return name.lower(), None
    if not version.strip().isdigit():
        raise errors.ProgrammingError(f"bad model reference '{ref}': expected name or name@version")
    return name.lower(), int(version)


def model_name(written: str, statement: str) -> str:
    """The name a statement that manages a whole model takes (CREATE MODEL, TRAIN, DROP MODEL ...).

    'm@2' names a version of m (PREDICT('m@2')); as a name it would create, train or drop m."""
    name = str(written).strip()
    if not name:
        raise errors.ProgrammingError(f"{statement}: a model name cannot be empty", sqlstate="42602")
    if "@" in name:
        raise errors.ProgrammingError(
            f"{statement}: invalid model name '{written}': '@' separates a model from a version "
            f"(as in PREDICT('m@2')), so a model name cannot contain it", sqlstate="42602")
    return name.lower()


# -- reading the catalog ---------------------------------------------------------------
def _database(source):
    """The Database of a Session or an Execution (or the Database itself)."""
    return getattr(source, "database", source)


def _session(source):
    """The session reading: a Session, or the session of a running statement (an Execution)."""
    return source if _is_session(source) else getattr(source, "session", None)


def _cache(source) -> ModelCache:
    return _database(source).state("models")


def _query(source, sql: str, params: list):
    try:
        if _is_session(source):  # a Session: sees its transaction
            return source.sql(sql, params).fetchall()
        cursor = _database(source).root.cursor()
        try:
            return cursor.execute(sql, params).fetchall()
        finally:
            cursor.close()
    except duckdb.Error as error:
        raise errors.translate(error) from None


def model_row(source, name: str) -> tuple | None:
    rows = _query(source, "SELECT name, deployed_version, latest_version, target, algorithm, training_query, "
                          "options FROM mldb.models WHERE name = ?", [name])
    return rows[0] if rows else None


def unknown_model(source, name: str) -> errors.ProgrammingError:
    names = [row[0] for row in _query(source, "SELECT name FROM mldb.models ORDER BY name", [])]
    known = f"models: {', '.join(names)}" if names else "there are no models yet"
    return errors.ProgrammingError(f"model '{name}' does not exist ({known})", sqlstate="42704")


_MODEL_CALLS = ("mldb_predict", "mldb_evaluate", "mldb_explain")  # what PREDICT / EVALUATE / EXPLAIN_PREDICT become


def views_using(source, name: str) -> list[tuple[str, str]]:
    """The views that call model ``name`` (or one of its versions): (name as shown, quoted path)."""
    rows = _query(source, "SELECT database_name, schema_name, view_name, sql FROM duckdb_views() "
                          "WHERE NOT internal AND (sql ILIKE '%mldb_predict%' OR sql ILIKE '%mldb_evaluate%' "
                          "OR sql ILIKE '%mldb_explain%') "
                          "ORDER BY ALL", [])
    return [(view if schema == "main" else f"{schema}.{view}", ".".join(map(_quoted, (database, schema, view))))
            for database, schema, view, sql in rows if name in _models_called(sql)]


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _models_called(sql: str) -> set[str]:
    """The model names in ``mldb_predict_*('m', ...)`` / ``mldb_evaluate_*('m@2', ...)`` calls (tokens, not a parse:
    a view written for DuckDB alone may hold syntax sqlglot does not read)."""
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    from mldb.frontend import MLDB

    try:
        tokens = MLDB().tokenize(sql)
    except TokenError:
        return set()
    calls = zip(tokens, tokens[1:], tokens[2:])  # function name, (, 'model'
    return {ref.text.partition("@")[0].strip().lower() for function, paren, ref in calls
            if function.text.lower().startswith(_MODEL_CALLS) and paren.token_type == TokenType.L_PAREN
            and ref.token_type == TokenType.STRING}


def versions(source, name: str) -> list[int]:
    rows = _query(source, "SELECT version FROM mldb.model_versions WHERE model = ? ORDER BY version", [name])
    return [row[0] for row in rows]


def _is_session(source) -> bool:
    return hasattr(source, "sql") and hasattr(source, "database")


def resolve(source, ref: str) -> tuple[str, int]:
    """(name, version): a pinned version, or the deployed one.

    A Session (the rewrite, once per statement) always asks the catalog, so a rolled-back
    TRAIN or DEPLOY is seen; the UDFs (once per batch) use what was last resolved. Inside
    a transaction, what the session resolves stays in its overlay.
    """
    name, version = parse_ref(ref)
    if version is not None:
        return name, version
    cache = _cache(source)
    overlay = cache.overlay(_session(source), create=_is_session(source))
    if overlay is not None and name in overlay.resolved and not _is_session(source):
        version = overlay.resolved[name]
        if version is None:
            raise unknown_model(source, name)
        return name, version
    cached = cache.resolved.get(name)
    if cached is not None and not _is_session(source):
        return name, cached
    row = model_row(source, name)
    if row is None:
        raise unknown_model(source, name)
    with cache.lock:
        (overlay.resolved if overlay is not None else cache.resolved)[name] = row[1]
    return name, row[1]


def shadow_version(source, name: str) -> int | None:
    """The version of ``name`` that shadows its deployed one (``DEPLOY MODEL m VERSION n AS SHADOW``), or None.

    Cached as ``resolve`` caches the deployed version: a Session (a statement's plan) asks the
    catalog; the UDFs (a view's batches) use what was last read, inside a transaction its overlay.
    """
    cache = _cache(source)
    overlay = cache.overlay(_session(source), create=_is_session(source))
    if not _is_session(source):
        if overlay is not None and name in overlay.shadows:
            return overlay.shadows[name]
        if name in cache.shadows:
            return cache.shadows[name]
    rows = _query(source, "SELECT shadow_version FROM mldb.models WHERE name = ?", [name])
    shadow = rows[0][0] if rows else None
    with cache.lock:
        (overlay.shadows if overlay is not None else cache.shadows)[name] = shadow
    return shadow


def load_model(source, ref: str) -> ModelVersion:
    """The ModelVersion for ``'name'`` (deployed) or ``'name@n'``; cached per database."""
    name, version = resolve(source, ref)
    cache = _cache(source)
    overlay = cache.overlay(_session(source), create=_is_session(source))
    key = (name, version)
    cached = overlay.loaded.get(key) if overlay is not None else None
    cached = cached or cache.loaded.get(key)
    if cached is not None and (not _is_session(source) or _current(source, cached)):
        return cached
    model = _read_version(source, name, version)
    with cache.lock:
        (overlay.loaded if overlay is not None else cache.loaded)[key] = model
    return model


def _current(source, model: ModelVersion) -> bool:
    """Whether the catalog still holds this very version (not one rolled back or replaced)."""
    rows = _query(source, "SELECT created_at FROM mldb.model_versions WHERE model = ? AND version = ?",
                  [model.name, model.version])
    return bool(rows) and rows[0][0] == model.created_at


def _read_version(source, name: str, version: int) -> ModelVersion:
    rows = _query(source, f"SELECT {_VERSION_COLUMNS} FROM mldb.model_versions WHERE model = ? AND version = ?",
                  [name, version])
    if not rows:
        if model_row(source, name) is None:
            raise unknown_model(source, name)
        known = ", ".join(map(str, versions(source, name)))
        raise errors.ProgrammingError(f"model '{name}' has no version {version} (versions: {known})",
                                      sqlstate="42704")
    (version, algorithm, task, target, target_type, classes, hyper, feats, encoder, metrics, created,
     weights) = rows[0]
    _check_embed_models(source, _json(feats))
    return ModelVersion(name, version, algorithm, task, target, target_type, _json(classes), _json(hyper),
                        _json(feats), _json(encoder), _json(metrics), created, bytes(weights))


def _check_embed_models(source, features: list[dict]) -> None:
    """A served database loads embedding models only from its clients' directories: the path
    stored with a text feature is checked as EMBED's is (mldb.model_versions is writable)."""
    roots = _database(source).file_roots
    if roots is None:
        return
    from mldb.vectors import embedding

    for feature in features or []:
        if isinstance(feature, dict) and feature.get("embed_model"):
            embedding.canonical(str(feature["embed_model"]), roots)


def _json(text):
    return json.loads(text) if isinstance(text, str) else text


def invalidate(source, name: str) -> None:
    """Forget the cached resolution and versions of ``name`` (after TRAIN / DEPLOY / DROP).

    Inside a transaction the change is the session's own until it commits: its overlay
    records the name's deployed version now (so the session's views follow it), and the
    commit makes everyone read the name again.
    """
    cache = _cache(source)
    cache.forget(name)
    overlay = cache.overlay(source, create=True) if _is_session(source) else None
    if overlay is not None:
        row = model_row(source, name)
        shadow = _query(source, "SELECT shadow_version FROM mldb.models WHERE name = ?", [name])
        with cache.lock:
            overlay.changed.add(name)
            overlay.resolved[name] = row[1] if row is not None else None
            overlay.shadows[name] = shadow[0][0] if shadow else None
