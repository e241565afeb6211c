"""Your own model functions: Python functions on Arrow arrays, loaded as SQL functions.

A UDF file declares functions with the ``mldb.udf`` decorator::

    import mldb

    @mldb.udf(params=["VARCHAR", "VARCHAR"], returns="DOUBLE")
    def text_similarity(a, b):          # a, b: pyarrow arrays of one DuckDB vector
        ...                             # return an array (Arrow, NumPy or a list) of len(a)

and SQL loads it explicitly: ``LOAD UDFS FROM 'udfs/similarity.py'`` (or
``mldb.connect(path, udfs=[...])``, or ``mldb --udfs FILE``). ``embed(texts)`` gives the
vectors EMBED computes (same model, same cache) for functions built on embeddings.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from dataclasses import dataclass
from typing import Callable

from mldb import errors


@dataclass(frozen=True)
class UdfSpec:
    name: str
    params: tuple[str, ...] | None  # SQL types; None: any arguments
    returns: str
    side_effects: bool = False


def udf(name: str | None = None, *, params: list[str] | None = None, returns: str,
        side_effects: bool = False) -> Callable:
    """Declare ``fn`` as a SQL function taking ``params`` and returning ``returns`` (SQL types)."""

    def declare(fn: Callable) -> Callable:
        fn.__mldb_udf__ = UdfSpec(name or fn.__name__, None if params is None else tuple(params), returns,
                                  side_effects)
        return fn

    return declare


def embed(texts: list[str], model: str | None = None):
    """float32 array (len(texts), d): the vectors ``EMBED`` returns for ``texts``."""
    from mldb.vectors.embedding import embed_texts

    return embed_texts(list(texts), model)


# -- loading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UdfSource:
    """Where a loaded function came from: the file and the text that ran (what a scale-out worker
    loads: the code travels as this text, never as the path). ``local_only``: why the text cannot
    run anywhere else (it imports a file next to it), or None."""

    path: str
    source: str
    local_only: str | None = None


def load_file(con, path: str, sources: dict | None = None) -> list[UdfSpec]:
    """Register every ``@mldb.udf`` function of the Python file ``path`` on ``con`` (all or none).

    The file is read once and *that text* runs; ``sources`` (a database's ``udf_sources``) gets
    ``name -> UdfSource`` for each function registered."""
    full, source = _read(path)
    specs = load_source(con, full, source)
    if sources is not None:
        record = UdfSource(full, source, local_imports(full, source))
        sources.update({spec.name: record for spec in specs})
    return specs


def load_source(con, path: str, source: str, names=None) -> list[UdfSpec]:
    """Register the ``@mldb.udf`` functions of ``source`` (the text of the file ``path``) on ``con``:
    all of them, or those in ``names``. ``load_file`` minus the file read (a scale-out worker)."""
    module = _run(path, source)
    found = {fn.__mldb_udf__.name: fn for fn in vars(module).values() if hasattr(fn, "__mldb_udf__")}
    if names is not None:
        found = {name: fn for name, fn in found.items() if name in set(names)}
    if not found:
        raise errors.ProgrammingError(f"{path} defines no UDFs: declare functions with @mldb.udf(...)")
    import duckdb

    registered = []
    try:
        for fn in found.values():
            _register(con, fn.__mldb_udf__, fn)
            registered.append(fn.__mldb_udf__)
    except (duckdb.Error, TypeError, ValueError) as error:  # (a name or type that is not a string)
        for spec in registered:
            con.remove_function(spec.name)
        raise errors.ProgrammingError(f"cannot register the UDFs of {path}: {error}") from None
    return registered


def _read(path: str) -> tuple[str, str]:
    """The file's absolute path and its text (decoded as Python decodes a source file)."""
    if not isinstance(path, str) or not path:
        raise errors.ProgrammingError("LOAD UDFS needs the name of a Python file")
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise errors.ProgrammingError(f"UDF file {path} does not exist", sqlstate="58P01")
    try:
        with open(full, "rb") as file:
            return full, importlib.util.decode_source(file.read())
    except (OSError, UnicodeDecodeError, SyntaxError) as error:  # (SyntaxError: a bad coding cookie)
        raise errors.ProgrammingError(f"cannot read UDF file {path}: {error}", sqlstate="58030") from None


def _run(path: str, source: str):
    """A new module named after ``path`` with ``source`` executed in it (as importing the file would)."""
    module_name = "mldb_udfs_" + "".join(c if c.isalnum() else "_" for c in path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(module_name, loader=None,
                                                                             origin=path))
    module.__file__ = path
    try:
        exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - the user's own UDF file
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's file: any failure (even exit()) is a loading error
        raise errors.ProgrammingError(f"loading UDF file {path} failed: {type(error).__name__}: {error}") from None
    return module


def local_imports(path: str, source: str) -> str | None:
    """Why ``source`` runs only next to ``path`` (None: it imports only installed modules).

    A relative import, or an import of a module whose file lies in the UDF file's directory
    (a sibling file), would not be there for a copy of the text run elsewhere. Imports made
    at run time (``importlib.import_module``) are not seen."""
    import ast

    try:
        tree = ast.parse(source, path)
    except SyntaxError:
        return None  # (it ran: cannot happen)
    folder = os.path.dirname(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            return f"a relative import (from {'.' * node.level}{node.module or ''} import ...)"
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            if name.split(".")[0] != "mldb" and _beside(name.split(".")[0], folder):  # (every worker has mldb)
                return f"the module {name.split('.')[0]}, a file next to it"
    return None


def _beside(module: str, folder: str) -> bool:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    origin = getattr(found, "origin", None) if found is not None else None
    if not origin or not os.path.isabs(origin):
        return False
    return os.path.commonpath([os.path.realpath(origin), os.path.realpath(folder)]) == os.path.realpath(folder)


def _register(con, spec: UdfSpec, fn: Callable) -> None:
    import duckdb

    try:
        con.remove_function(spec.name)  # loading a file again replaces its functions
    except duckdb.Error:
        pass
    params = None if spec.params is None else [duckdb.sqltype(p) for p in spec.params]
    con.create_function(spec.name, _vectorized(spec, fn), params, duckdb.sqltype(spec.returns), type="arrow",
                        side_effects=spec.side_effects)


def _vectorized(spec: UdfSpec, fn: Callable) -> Callable:
    """Wrap ``fn``: plain Arrow arrays in; its result checked (length) and named in any error."""

    def call(*arrays):
        import pyarrow as pa

        arrays = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
        rows = len(arrays[0]) if arrays else 1
        try:
            result = fn(*arrays)
        except Exception as error:  # the user's code: report it under the function's name
            raise RuntimeError(f"UDF {spec.name} failed: {type(error).__name__}: {error}") from None
        result = _as_arrow(result, spec)
        if len(result) != rows:
            raise ValueError(f"UDF {spec.name} returned {len(result)} values for {rows} rows")
        return result

    call.__name__ = spec.name
    if spec.params is not None:  # DuckDB counts the parameters of the Python function
        call.__signature__ = inspect.Signature(
            [inspect.Parameter(f"arg{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(len(spec.params))])
    return call


def _as_arrow(result, spec: UdfSpec):
    import pyarrow as pa

    if isinstance(result, (pa.Array, pa.ChunkedArray)):
        return result
    try:
        return pa.array(result)
    except (pa.ArrowException, TypeError, ValueError) as error:
        raise TypeError(f"UDF {spec.name} must return an array, got {type(result).__name__}: {error}") from None
