"""Deployment policies of TRAIN and CREATE MODEL: ``WITH (deploy = 'if_better', holdout = '...', metric = ...)``.

A retrained version should serve only when it is better than the one serving now, judged on data
the user trusts (SPEC section 11; a monitor's ``THEN TRAIN ... DEPLOY IF BETTER`` runs this very
statement). The options belong to the statement, not to the model: they are taken out before the
training options are checked and are never stored, so a later bare TRAIN does not inherit them.

- ``deploy = 'always'``: the new version serves, even over a pinned one; ``'never'``: what serves
  keeps serving; absent: the new version serves when the deployed version was the newest.
- ``deploy = 'if_better'``: the holdout (a query or a table name) is read once, before training, into
  one Arrow table; inside the TRAIN's transaction the new version and the deployed one are scored on
  exactly those rows with EVALUATE's own metric code (:mod:`mldb.models.functions`); the new version
  serves only when strictly better (a tie keeps the champion). Each decision is a row of
  ``mldb.deploy_decisions``. A holdout that cannot be read or scored fails the TRAIN, which then
  writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mldb import errors
from mldb.frontend.reads import one_query
from mldb.models import deployments, evaluate, features, functions, registry, rules, train

POLICIES = ("if_better", "always", "never")
OPTIONS = ("deploy", "holdout", "metric")
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "mse", "rmse"})
_METRICS = {"classification": tuple(m for m in evaluate.CLASSIFICATION if m != "rows"),
            "regression": tuple(m for m in evaluate.REGRESSION if m != "rows")}
_TABLE_NAME = re.compile(r'(?:"[^"]+"|[A-Za-z_]\w*)(?:\.(?:"[^"]+"|[A-Za-z_]\w*)){0,2}')


@dataclass
class Policy:
    deploy: str | None = None  # None: today's rule (serve when the deployed version was the newest)
    holdout: str | None = None  # the holdout query (if_better)
    metric: str | None = None  # None: the task's primary metric
    rows: pa.Table | None = None  # the holdout, read once (the rows whose target is not NULL)
    types: dict | None = None  # its columns' SQL types
    decision: "Decision | None" = None


@dataclass
class Decision:
    champion: int | None
    serves: bool
    metric: str | None = None
    value: float | None = None
    champion_value: float | None = None


# -- the options ---------------------------------------------------------------------------
def take(options: dict, statement: str) -> tuple[dict, Policy]:
    """The training options without the deployment options, and the policy those give (checked)."""
    given = {key: options[key] for key in OPTIONS if key in options}
    rest = {key: value for key, value in options.items() if key not in OPTIONS}
    deploy = given.get("deploy")
    if deploy is not None and (not isinstance(deploy, str) or deploy.lower() not in POLICIES):
        raise _bad(f"{statement}: deploy is one of {', '.join(map(repr, POLICIES))}; found {deploy!r}")
    deploy = deploy.lower() if deploy is not None else None
    if deploy != "if_better":
        extra = [key for key in ("holdout", "metric") if key in given]
        if extra:
            raise _bad(f"{statement}: {' and '.join(extra)} {'go' if len(extra) > 1 else 'goes'} with "
                       f"deploy = 'if_better' (the new version is compared with the deployed one on the holdout)")
        return rest, Policy(deploy)
    holdout, metric = given.get("holdout"), given.get("metric")
    if not isinstance(holdout, str) or not holdout.strip():
        raise _bad(f"{statement}: deploy = 'if_better' needs holdout = 'SELECT ...' (or a table name): the "
                   "labelled rows both versions are scored on")
    if metric is not None and (not isinstance(metric, str) or metric.lower() not in _all_metrics()):
        raise _bad(f"{statement}: unknown metric {metric!r}; the metrics are: {', '.join(_all_metrics())}")
    return rest, Policy(deploy, _holdout_query(holdout, statement), metric.lower() if metric else None)


def _all_metrics() -> list[str]:
    return list(dict.fromkeys(_METRICS["classification"] + _METRICS["regression"]))


def _holdout_query(text: str, statement: str) -> str:
    """The holdout as one query: a table or view name reads the whole of it; anything else must be
    a single query (a holdout runs no other statement)."""
    text = text.strip().rstrip(";").strip()
    if _TABLE_NAME.fullmatch(text):
        return f"SELECT * FROM {text}"
    return one_query(text, f"{statement}: the holdout")


# -- before training ---------------------------------------------------------------------------
def prepare(session, name: str, policy: Policy, table: pa.Table, target: str, types: dict[str, str],
            options: dict, statement: str) -> None:
    """Check the metric against the task and read the holdout, before the (long) training."""
    if policy.deploy != "if_better":
        return
    known = train._drop_null_targets(name, table, target)  # (as training will: its errors, first)
    task = features.infer_task(name, target, known[target], options.get("task"), types.get(target))
    kind = "regression" if task == "regression" else "classification"
    if policy.metric is None:
        policy.metric = evaluate.PRIMARY[task]
    elif policy.metric not in _METRICS[kind]:
        raise _bad(f"{statement}: metric '{policy.metric}' is not one of a {kind} model's; they are: "
                   f"{', '.join(_METRICS[kind])}")
    policy.rows, policy.types = _read_holdout(session, policy.holdout, target, statement)
    champion = _champion(session, name)
    if champion is not None:
        _check_columns(champion, policy)


def _read_holdout(session, query: str, target: str, statement: str) -> tuple[pa.Table, dict[str, str]]:
    from mldb.models.statements import _check_names  # (one rule for every query mldb reads columns from)

    result = session.execute(query)
    if not result.has_rows:
        raise errors.ProgrammingError(f"{statement}: the holdout is not a query returning rows: {query}",
                                      sqlstate="42601")
    names = [column[0] for column in result.description]
    _check_names(query, names, "the holdout")
    reader = result.arrow_reader(64 * 1024)
    table = pa.Table.from_batches(list(reader), schema=reader.schema)
    column = _column(table, target)
    if column is None:
        raise errors.ProgrammingError(f"{statement}: the holdout has no target column '{target}'; it has: "
                                      f"{', '.join(names)}", sqlstate="42703")
    mask = features.known(table[column])  # (NULL and NaN targets are left out, as EVALUATE does)
    kept = table if mask is None else table.filter(mask)
    if kept.num_rows == 0:
        raise _bad(f"{statement}: the holdout has no row with a '{target}' to score ({table.num_rows} rows, "
                   f"every '{target}' NULL or NaN): {query}")
    return kept, {column[0]: str(column[1]) for column in result.description}


def _column(table: pa.Table, name: str) -> str | None:
    """The table's column called ``name`` as SQL binds it (ignoring case)."""
    return next((column for column in table.column_names if column.lower() == name.lower()), None)


def _champion(session, name: str) -> registry.ModelVersion | None:
    version = deployments.deployed(session, name)
    return None if version is None else registry.load_model(session, f"{name}@{version}")


def _check_columns(model: registry.ModelVersion, policy: Policy) -> None:
    """EVALUATE's checks of the holdout's columns (features and target) against one version."""
    rules.check_columns(model, policy.types)
    target = next((name for name in policy.types if name.lower() == model.target.lower()), None)
    if target is None:
        raise errors.ProgrammingError(f"the holdout has no target column '{model.target}' for version "
                                      f"{model.version} of model '{model.name}'", sqlstate="42703")
    rules.check_target(model, policy.types[target])


def planned(policy: Policy, status: str) -> bool | None:
    """Whether the new version will serve, as far as known before training (None: today's rule; a
    CREATE MODEL's first version always serves; if_better decides only once both versions are scored)."""
    if policy.deploy is None or status != "TRAIN":
        return None
    return policy.deploy == "always"


# -- inside the TRAIN's transaction -------------------------------------------------------------
def decide(session, name: str, version: int, policy: Policy, before: int | None) -> bool | None:
    """Whether the new ``version`` serves (None: today's rule); an if_better decision is kept in
    ``policy.decision`` (its metric values computed here, on the holdout rows)."""
    if policy.deploy is None:
        return None
    if policy.deploy != "if_better":
        serves = policy.deploy == "always" or before is None
        policy.decision = Decision(before, serves)
        return serves
    challenger = registry.load_model(session, f"{name}@{version}")
    value = score(challenger, policy)
    if before is None:
        policy.decision = Decision(None, True, policy.metric, value)
        return True
    champion = registry.load_model(session, f"{name}@{before}")
    champion_value = score(champion, policy)
    better = value < champion_value if policy.metric in LOWER_IS_BETTER else value > champion_value
    policy.decision = Decision(before, better, policy.metric, value, champion_value)
    return better


def score(model: registry.ModelVersion, policy: Policy) -> float:
    """The policy's metric of ``model`` on the holdout rows, as ``EVALUATE(model, holdout)`` computes it."""
    _check_columns(model, policy)
    rows, metric = policy.rows, policy.metric
    target = _column(rows, model.target)
    rows = rows.filter(pc.is_valid(rows[target]))
    arrays = [rows[_column(rows, feature)].combine_chunks() for feature in model.feature_names]
    truth = rows[target].combine_chunks()
    if model.task == "regression":
        predicted = model.predict(arrays).cast(pa.float64())
        result = functions.regression_metrics(lambda: model, truth.cast(pa.float64()), predicted)
    else:
        result = functions.classification_metrics(model, _as_text(truth), model.predict_proba(arrays))
    value = result.get(metric)
    if value is None:
        raise _bad(f"metric '{metric}' of version {model.version} of model '{model.name}' cannot be computed on "
                   f"the holdout's {len(rows)} rows (e.g. roc_auc needs both classes)")
    return float(value)


def _as_text(labels: pa.Array) -> pa.Array:
    """The labels as CAST(... AS VARCHAR) writes them (what EVALUATE compares with the classes)."""
    if pa.types.is_boolean(labels.type):
        return pc.if_else(labels, "true", "false")
    return labels.cast(pa.string())


def record(session, name: str, version: int, policy: Policy, before: int | None) -> None:
    """The deployment change and the if_better decision row. The policy is the change's reason when it
    chose between versions; a first version serves because nothing else can (``'train'``)."""
    reason = policy.deploy if policy.deploy is not None and before is not None else "train"
    deployments.record(session, name, deployments.deployed(session, name), before, reason)
    decision = policy.decision
    if policy.deploy != "if_better" or decision is None:
        return
    session.sql("INSERT INTO mldb.deploy_decisions (model, version, champion_version, metric, value, champion_value, "
                "holdout, holdout_rows, deployed, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "current_localtimestamp())",
                [name, version, decision.champion, decision.metric, decision.value, decision.champion_value,
                 policy.holdout, policy.rows.num_rows, decision.serves])


def _bad(message: str) -> errors.ProgrammingError:
    return errors.ProgrammingError(message, sqlstate="22023")
