"""Hyperparameter search and ``USING auto``: train several candidates, keep the best on validation.

Every TRAIN goes through :func:`fit`, which returns the chosen ``train.Trained`` and one
:class:`Trial` per candidate; ``mldb.models.statements`` writes the version and the trials
(``mldb.trials``) in one transaction. Three cases:

- a plain TRAIN (``USING mlp WITH (lr = 0.01)``): one fit, one trial row, chosen;
- a search, ``WITH (search = 'random' | 'grid' | 'tpe', trials = N, <option> = [...])``: optuna's
  RandomSampler, GridSampler or TPESampler, seeded with the model's ``seed``, proposes each trial;
- ``USING auto``: the linear model for the task (logistic or linear), an MLP, LightGBM, then a short
  random LightGBM search, while ``time_budget`` seconds (default 60) remain.

The budget (``time_budget``: auto's, or a search's when given) counts from the first candidate,
which always trains to its end. A later candidate is not started once the budget is spent
(recorded as skipped) and is stopped between batches when it runs out (recorded as stopped).
Auto also skips its later candidates when the first had fewer than 30 validation rows: on so few,
one row is over 3% of accuracy, and comparing candidates would pick noise (and small tables stay
cheap to train). For the same reason the short LightGBM search needs 200 validation rows (a table of
about 1,000): below that its trials differ by a row or two, and it would double the cost of auto.

The space (checked by :func:`check` before any data is read; every refusal is 22023):

- A list given for an option that takes one value is that option's space. ``hidden`` takes a list,
  so its space is a list of lists (``hidden = [[64], [64, 32]]``).
- For random and tpe, a list of two numbers is a range ``[low, high]``, integral for an integer
  option and real for a number option; a real range whose ``high`` is at least 10x a positive
  ``low`` (learning rates, regularisation) is sampled on a log scale. Any other list (one value,
  three or more, texts, booleans, lists) is a set of choices (a value given twice is tried once).
- For grid, every list is a set of choices (``[0.01, 0.1]`` is those two values), and ``trials``
  defaults to (and is capped at) the grid's size; fewer trials take a seeded random part of it.
  Random and tpe default to 10 trials.
- Each value (each bound) must be valid for the option, as a single value would be. Options that
  decide the validation rows or the data (seed, valid_fraction, task, ...) cannot be searched:
  every trial is scored on the same validation rows.

Every trial trains with the model's seed on the same split; the best validation metric wins
(accuracy for classification, r2 for regression; the earlier trial on a tie). A trial that fails
(an MLP that diverges, a network over ``max_parameters``, LightGBM not installed) is recorded as
failed and the search goes on; when every trial fails, the first one's error is raised.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

from mldb import errors
from mldb.models import algorithms, evaluate, train
from mldb.options import Option, Schema

SEARCHES = ("random", "grid", "tpe")
SEARCH = Schema(
    "search",
    Option("search", "text", choices=SEARCHES),
    Option("trials", "int", low=1, high=10_000),
    Option("time_budget", "number", low=0, high=10**9, open_low=True),
)
DEFAULT_TRIALS = 10
NOT_SEARCHED = ("seed", "valid_fraction", "task", "device", "snapshot", "log_sample", "embed_model",
                "max_parameters")

MAX_GRID = 10_000  # points: optuna's GridSampler lists them all before the first trial (30^9 of them took 23 GB)
AUTO_BUDGET = 60.0  # seconds
AUTO_MIN_VALID_ROWS = 30  # below this, one accuracy point is over 3%: comparing candidates would pick noise
AUTO_SEARCH_TRIALS = 8
AUTO_SEARCH_MIN_VALID_ROWS = 200  # below this, the search's trials differ by a row or two: it would pick noise
AUTO_SEARCH_SPACE = {"num_leaves": [7, 127], "learning_rate": [0.01, 0.3], "min_data_in_leaf": [5, 60],
                     "feature_fraction": [0.5, 1.0]}


@dataclass(frozen=True)
class Param:
    """One searched option: a range (``kind`` int, float or log; ``values`` = [low, high]) or choices."""

    name: str
    kind: str
    values: list


@dataclass
class Trial:
    """One candidate as ``mldb.trials`` records it; ``status`` is trained, failed, skipped (not
    started: the budget was spent) or stopped (the budget ran out while it trained)."""

    algorithm: str
    params: dict
    status: str = "trained"
    metric: float | None = None
    metric_name: str | None = None
    seconds: float = 0.0
    error: str | None = None
    chosen: bool = False
    trained: train.Trained | None = field(default=None, repr=False)
    failure: Exception | None = field(default=None, repr=False)

    def row(self, number: int) -> dict:
        params = self.trained.hyper if self.trained is not None else self.params
        return {"trial": number, "algorithm": self.algorithm, "params": json.dumps(params),
                "valid_metric": self.metric, "metric_name": self.metric_name, "seconds": self.seconds,
                "chosen": self.chosen, "status": self.status, "error": self.error}


@dataclass
class Outcome:
    trained: train.Trained
    trials: list[Trial]


# -- checking the definition ------------------------------------------------------------------
def check(model: str, algorithm: str | None, options: dict) -> dict:
    """The options checked and normalised (the search settings and spaces included), before any
    data is read. Running it again on its own result gives the same result (TRAIN m re-checks)."""
    where = f"model '{model}'"
    algorithm = algorithms.check(model, algorithm)
    settings = SEARCH.check({key: value for key, value in options.items() if key in SEARCH.options}, where)
    rest = {key: value for key, value in options.items() if key not in SEARCH.options}
    if algorithm == "auto":
        return settings | _check_auto(model, settings, rest)
    schema = train.options_schema(algorithm)
    train.refuse_foreign(model, algorithm, rest)
    _refuse_unknown(model, rest, [schema], tuple(SEARCH.options))
    if "search" not in settings:
        given = sorted(settings)
        if given:
            raise errors.ProgrammingError(
                f"{where}: option{'s' if len(given) > 1 else ''} {', '.join(given)} appl"
                f"{'y' if len(given) > 1 else 'ies'} to a search (search = 'random', 'grid' or 'tpe') or "
                "to USING auto", sqlstate="22023")
        _refuse_lists(model, schema, rest)
        checked = schema.check(rest, where)
        algorithms.check_options(model, algorithm, checked)
        return checked
    spaces = {name: value for name, value in rest.items() if name in schema.options
              and _is_space(schema.options[name], value)}
    space = [_param(model, schema.options[name], value, settings["search"]) for name, value in spaces.items()]
    if settings["search"] == "grid" and _grid_size(space) > MAX_GRID:
        raise errors.ProgrammingError(
            f"{where}: the grid has {_grid_size(space):,} points ({' x '.join(str(len(p.values)) for p in space)}), "
            f"more than {MAX_GRID:,}; give fewer values, or use search = 'random' or 'tpe' with trials = N",
            sqlstate="54000")
    if not space:
        raise errors.ProgrammingError(
            f"{where}: search = '{settings['search']}' needs at least one option given as a list to search "
            "over, e.g. lr = [0.001, 0.1] or hidden = [[64], [64, 32]]", sqlstate="22023")
    fixed = schema.check({name: value for name, value in rest.items() if name not in spaces}, where)
    algorithms.check_options(model, algorithm, fixed | spaces)
    return settings | fixed | {param.name: param.values for param in space}


def _check_auto(model: str, settings: dict, rest: dict) -> dict:
    """USING auto takes the options of any of its candidates (each candidate gets those it knows)."""
    where = f"model '{model}'"
    if "search" in settings or "trials" in settings:
        raise errors.ProgrammingError(f"{where}: USING auto runs its own search over algorithms; search and "
                                      "trials need one algorithm (USING linear, logistic, mlp or lightgbm)",
                                      sqlstate="22023")
    schemas = [train.options_schema(algorithm) for algorithm in _AUTO_ALGORITHMS]
    _refuse_unknown(model, rest, schemas, ("time_budget",))
    checked = {}
    for schema in schemas:
        mine = {name: value for name, value in rest.items() if name in schema.options
                and not (schema is not train.OPTIONS and name in _TORCH_DEVICE)}
        _refuse_lists(model, schema, mine)
        checked |= schema.check(mine, where)
    if "device" in checked:  # (a GPU the machine lacks is refused before any data is read)
        train.device_for(model, checked["device"])
    return checked


def _refuse_unknown(model: str, options: dict, schemas: list[Schema], extra: tuple[str, ...]) -> None:
    """Options none of ``schemas`` knows, refused with every option the statement takes."""
    unknown = sorted(name for name in options if not any(name in schema.options for schema in schemas))
    if unknown:
        known = sorted({name for schema in schemas for name in schema.options} | set(extra))
        raise errors.ProgrammingError(f"model '{model}': unknown option{'s' if len(unknown) > 1 else ''} "
                                      f"{', '.join(unknown)}; known: {', '.join(known)}", sqlstate="22023")


def _refuse_lists(model: str, schema: Schema, options: dict) -> None:
    for name, value in options.items():
        if name in schema.options and _is_space(schema.options[name], value):
            raise errors.ProgrammingError(
                f"model '{model}': option {name} = {value} is a search space; add search = 'random', 'grid' or "
                f"'tpe' (with one algorithm) to search it, or give one value", sqlstate="22023")


def _is_space(option: Option, value) -> bool:
    """A list for a one-value option; for ``hidden`` (a list itself), a list holding a list."""
    if not isinstance(value, list):
        return False
    return option.kind != "sizes" or any(isinstance(item, list) for item in value)


def _param(model: str, option: Option, values: list, search: str) -> Param:
    where = f"model '{model}'"
    if option.name in NOT_SEARCHED:
        raise errors.ProgrammingError(f"{where}: option {option.name} cannot be searched: every trial is "
                                      "scored on the same validation rows of the same data; give one value",
                                      sqlstate="22023")
    if not values:
        raise errors.ProgrammingError(f"{where}: the search space of {option.name} is empty; give a range "
                                      "[low, high] or the values to try", sqlstate="22023")
    checked = []
    for value in values:  # (a repeated value would be a repeated trial)
        value = option.check(value, where)
        checked += [value] if value not in checked else []
    if search == "grid" or len(checked) != 2 or option.kind not in ("int", "number"):
        return Param(option.name, "choices", checked)
    low, high = checked
    if low > high:
        raise errors.ProgrammingError(f"{where}: the range of {option.name} is [low, high]; found low {low} "
                                      f"above high {high}", sqlstate="22023")
    if option.kind == "int":
        return Param(option.name, "int", checked)
    return Param(option.name, "log" if 0 < low and high >= 10 * low else "float", checked)


def _space(model: str, options: dict, schema: Schema, search: str) -> list[Param]:
    """The space of options :func:`check` normalised."""
    return [_param(model, schema.options[name], value, search) for name, value in options.items()
            if name in schema.options and _is_space(schema.options[name], value)]


# -- training ---------------------------------------------------------------------------------
def fit(model: str, table, target: str, types: dict[str, str], algorithm: str | None, options: dict,
        check_cancel=lambda: None) -> Outcome:
    """Train ``model`` as its (checked) definition says: once, a search, or USING auto."""
    algorithm = algorithms.check(model, algorithm)
    settings = {key: value for key, value in options.items() if key in SEARCH.options}
    options = {key: value for key, value in options.items() if key not in SEARCH.options}
    run = _Runner(model, table, target, types, check_cancel, settings.get("time_budget"))
    if algorithm == "auto":
        return _auto(run, options)
    if "search" not in settings:
        started = time.perf_counter()
        trained = train.fit(model, table, target, types, algorithm, options, check_cancel)
        trial = _trained_trial(algorithm, options, trained, time.perf_counter() - started)
        return _choose([trial])
    schema = train.options_schema(algorithm)
    space = _space(model, options, schema, settings["search"])
    fixed = {key: value for key, value in options.items() if key not in {param.name for param in space}}
    trials = run.search(algorithm, fixed, space, settings["search"], settings.get("trials"),
                        _seed(algorithm, fixed), f"SEARCH {model}")
    return _choose(trials)


class _Runner:
    """Runs candidates for one TRAIN: times each, records a failure, and keeps the time budget."""

    def __init__(self, model, table, target, types, check_cancel, budget):
        self.model, self.table, self.target, self.types = model, table, target, types
        self.check_cancel = check_cancel
        self.deadline = time.perf_counter() + budget if budget else math.inf

    def spent(self) -> bool:
        return time.perf_counter() >= self.deadline

    def one(self, algorithm: str, options: dict, bounded: bool = True) -> Trial:
        """One candidate; an mldb error (or a missing package) is its failure, not the statement's. A
        ``bounded`` one is stopped (between batches) when the budget runs out; the first is not."""
        self.check_cancel()
        started = time.perf_counter()
        try:
            trained = train.fit(self.model, self.table, self.target, self.types, algorithm, options,
                                self._bounded if bounded else self.check_cancel)
        except _OverBudget:
            return Trial(algorithm, options, "stopped", seconds=time.perf_counter() - started,
                         error="time budget spent during training")
        except (errors.Error, ImportError) as error:
            if getattr(error, "sqlstate", None) == "57014":  # (a cancel stops the whole statement)
                raise
            return Trial(algorithm, options, "failed", seconds=time.perf_counter() - started,
                         error=str(error), failure=error)
        return _trained_trial(algorithm, options, trained, time.perf_counter() - started)

    def _bounded(self) -> None:
        self.check_cancel()
        if self.spent():
            raise _OverBudget()

    def search(self, algorithm, fixed, space, kind, trials, seed, desc, first: bool = True) -> list[Trial]:
        """Up to ``trials`` trials proposed by optuna's sampler, while the budget lasts (the ``first``
        candidate of the TRAIN runs to its end). A failed trial is pruned for optuna (a grid point
        counts as done)."""
        import optuna

        from mldb.progress import bar

        size = _grid_size(space) if kind == "grid" else None
        total = min(trials or size, size) if size else (trials or DEFAULT_TRIALS)
        done: list[Trial] = []

        def objective(proposal) -> float:
            sampled = {param.name: _suggest(proposal, param) for param in space}
            trial = self.one(algorithm, fixed | sampled, bounded=bool(done) or not first)
            done.append(trial)
            progress.update(1)
            if trial.status != "trained" or not math.isfinite(_score(trial)):
                raise optuna.TrialPruned()
            return trial.metric

        def budget(study, _) -> None:
            if self.spent():
                study.stop()

        with bar(total=total, desc=desc, unit="trial") as progress:
            _study(kind, space, seed, total).optimize(objective, n_trials=total, callbacks=[budget])
        return done


class _OverBudget(Exception):
    """Raised between batches of a candidate still training when the time budget runs out."""


def _study(kind: str, space: list[Param], seed: int, trials: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # (it logs each trial; mldb.trials records them)
    seed = seed % 2**32  # (numpy's RandomState takes 32 bits)
    if kind == "grid":
        sampler = optuna.samplers.GridSampler({p.name: list(range(len(p.values))) for p in space}, seed=seed)
    elif kind == "tpe":  # (a short search still gets some TPE-guided trials after its random start)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 3)))
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    return optuna.create_study(direction="maximize", sampler=sampler)


def _suggest(proposal, param: Param):
    """The trial's value of ``param``: choices are drawn as indices (optuna's categoricals are scalars)."""
    if param.kind == "int":
        return proposal.suggest_int(param.name, *param.values)
    if param.kind in ("float", "log"):
        return proposal.suggest_float(param.name, *param.values, log=param.kind == "log")
    return param.values[proposal.suggest_categorical(param.name, list(range(len(param.values))))]


def _seed(algorithm: str, options: dict) -> int:
    """The model's seed, which also seeds the sampler."""
    return int(options.get("seed", train.options_schema(algorithm).defaults.get("seed", 0)))


def _grid_size(space: list[Param]) -> int:
    return math.prod(len(param.values) for param in space)


def _trained_trial(algorithm: str, options: dict, trained: train.Trained, seconds: float) -> Trial:
    name = evaluate.PRIMARY.get(trained.task, "accuracy")
    metric = trained.metrics.get(name)
    metric = float(metric) if metric is not None else None
    return Trial(trained.algorithm or algorithm, options, "trained", metric, name, seconds, trained=trained)


def _choose(trials: list[Trial]) -> Outcome:
    """The best trained trial (the earlier on a tie; a NaN metric ranks last); every trial failed:
    the first one's error."""
    trained = [trial for trial in trials if trial.status == "trained"]
    if not trained:
        raise next(trial.failure for trial in trials if trial.failure is not None)
    best = trained[0]
    for trial in trained[1:]:
        if _score(trial) > _score(best):
            best = trial
    best.chosen = True
    return Outcome(best.trained, trials)


def _score(trial: Trial) -> float:
    metric = trial.metric
    return -math.inf if metric is None or math.isnan(metric) else metric


# -- USING auto -------------------------------------------------------------------------------
_AUTO_ALGORITHMS = ("linear", "logistic", "mlp", "lightgbm")
# auto's device is the torch candidates' ('cuda' included); its LightGBM candidates train on the CPU
_TORCH_DEVICE = ("device",)


def _auto(run: _Runner, options: dict) -> Outcome:
    """The linear model for the task, an MLP, LightGBM, then (from AUTO_SEARCH_MIN_VALID_ROWS validation
    rows) a short random LightGBM search."""
    if run.deadline == math.inf:
        run.deadline = time.perf_counter() + AUTO_BUDGET
    first = train.linear_for(run.model, run.table, run.target, run.types, options.get("task"))
    trials = [run.one(first, _options_for(first, options), bounded=False)]
    for algorithm in ("mlp", "lightgbm"):
        why = _skip(run, trials[0])
        given = _options_for(algorithm, options)
        trials.append(Trial(algorithm, given, "skipped", error=why) if why else run.one(algorithm, given))
    boosted = trials[-1]
    if boosted.status == "trained" and not _skip(run, trials[0]) \
            and boosted.trained.valid_rows >= AUTO_SEARCH_MIN_VALID_ROWS:
        schema = train.options_schema("lightgbm")
        space = [_param(run.model, schema.options[name], values, "random")
                 for name, values in AUTO_SEARCH_SPACE.items() if name in schema.options]
        fixed = _options_for("lightgbm", options)
        space = [param for param in space if param.name not in fixed]
        if space:
            trials += run.search("lightgbm", fixed, space, "random", AUTO_SEARCH_TRIALS, _seed("lightgbm", fixed),
                                 f"AUTO {run.model}", first=False)
    return _choose(trials)


def _skip(run: _Runner, first: Trial) -> str | None:
    """Why auto tries no more candidates after its first: the budget is spent, or too few validation rows."""
    if run.spent():
        return "time budget spent"
    if first.trained is not None and first.trained.valid_rows < AUTO_MIN_VALID_ROWS:
        return (f"{first.trained.valid_rows} validation rows are too few to compare candidates "
                f"(auto compares from {AUTO_MIN_VALID_ROWS})")
    return None


def _options_for(algorithm: str, options: dict) -> dict:
    """The options of an auto definition that ``algorithm`` takes (hidden and dropout: the MLP's only)."""
    schema = train.options_schema(algorithm)
    kept = {name: value for name, value in options.items() if name in schema.options}
    if algorithm == "lightgbm":
        kept = _cpu_device(kept)
    if algorithm in ("linear", "logistic"):
        kept = {name: value for name, value in kept.items() if name not in algorithms.MLP_ONLY}
    return kept


def _cpu_device(options: dict) -> dict:
    """The options less a torch device ('cuda', 'cuda:N') LightGBM does not take: it trains on the CPU."""
    if options.get("device", "auto") in ("auto", "cpu"):
        return options
    return {name: value for name, value in options.items() if name != "device"}


def retrained(stored: dict, given: dict, algorithm_given: bool) -> dict:
    """The stored options a ``TRAIN m [USING x] [WITH (...)]`` starts from. A bare ``TRAIN m`` runs the
    stored search again, and so does one whose options leave some of its space to search (``WITH
    (num_leaves = 20)`` fixes one of two searched options). A TRAIN that names an algorithm, or whose
    options leave nothing to search, trains one version with them: the old search ends (unless the
    TRAIN gives a search of its own)."""
    if "search" not in stored or "search" in given or any(_searched(name, value) for name, value in given.items()):
        return stored
    left = any(_searched(name, value) for name, value in (stored | given).items())
    if left and not algorithm_given:
        return stored
    return {name: value for name, value in stored.items()
            if name not in ("search", "trials", "time_budget") and not _searched(name, value)}


def _searched(name: str, value) -> bool:
    """Whether a stored option value is a search space (``hidden``'s own value is a list: its space a list of lists)."""
    if name == "hidden":
        return isinstance(value, list) and any(isinstance(item, list) for item in value)
    return isinstance(value, list)


def inherited(algorithm: str | None, stored: dict) -> dict:
    """The stored options a ``TRAIN m USING <algorithm>`` keeps: those ``algorithm`` takes. A search's
    settings and spaces stay with one algorithm (USING auto runs its own), ``time_budget`` with a
    search or auto, linear / logistic drop the MLP's hidden and dropout, and lightgbm a GPU device."""
    algorithm = (algorithm or "auto").lower()
    if algorithm == "auto":
        schemas = [train.options_schema(name) for name in _AUTO_ALGORITHMS]
        return {name: value for name, value in stored.items() if name == "time_budget" or any(
            name in schema.options and not _is_space(schema.options[name], value) for schema in schemas)}
    if algorithm not in algorithms.ALGORITHMS:
        return stored  # (the statement refuses the algorithm)
    schema = train.options_schema(algorithm)
    searched = "search" in stored
    if algorithm == "lightgbm":
        stored = _cpu_device(stored)
    return {name: value for name, value in stored.items()
            if (name in schema.options and (searched or not _is_space(schema.options[name], value))
                and not (algorithm in ("linear", "logistic") and name in algorithms.MLP_ONLY))
            or (searched and name in SEARCH.options)}
