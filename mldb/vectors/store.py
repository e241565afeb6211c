"""FAISS indexes: their catalog rows, the committed state of each one, and how a
transaction changes it.

The catalog (schema ``mldb``, plain DuckDB tables that any SQL can read):

- ``mldb.index_definitions``: one row per index (what it covers and its options),
  written by CREATE INDEX and DROP INDEX; ``version`` and ``row_count`` there are those
  of the bytes stored in ``mldb.index_data`` (the serialized index, a BLOB).
- ``mldb.index_changes``: one row per committed transaction that changed an index
  (build_id, version, row_count, changed_at). It is an INSERT, so concurrent writers
  never update one shared row; a checkpoint folds the rows into the definition.
- ``mldb.indexes``: a view over both: the current ``version`` (1 + the committed changes),
  ``row_count``, and ``stale`` (the stored bytes are older than the index: the next
  process to load it catches up from the table).

In memory, per database (``VectorState``), each index has one ``IndexEntry``: its
committed FAISS state (matching the committed table at ``version``), and a write lock.
A transaction that writes to an indexed table takes the lock at its first write and
keeps it until it commits or rolls back, so index changes commit one at a time. Its
changes stay private until then: after each statement the keys whose row differs from
the committed index are added to the transaction's ``touched`` set (a superset is
harmless); ``on_commit`` reads those rows back from the committed table and publishes a
new state, ``on_rollback`` forgets them. Searches of the session that holds uncommitted
changes, and searches that cannot prove their snapshot matches the committed state, are
left to DuckDB (exact). See ``searchable``.

Bytes are written at CREATE INDEX, at a checkpoint every ``CHECKPOINT_CHANGES``
committed changes (for indexes up to ``PERSIST_BYTES``) and when the database closes.
Loading reads the last bytes and, when changes were committed since, catches up with the
table by comparing each row's key and ``hash(vector)`` (``sync``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field, replace

import duckdb
import numpy as np

from mldb import errors
from mldb.vectors import faiss as fx
from mldb.vectors.rows import (_quote, _same, _vectors_of, build_state, check_finite, one, read_hashes, read_rows,
                               sync)

LOCK_TIMEOUT = 10.0  # seconds a write waits for another transaction's change of the same index (then 40001)
CHECKPOINT_CHANGES = 1000  # committed changes of an index between two rewrites of its bytes
PERSIST_BYTES = 32 * 1024 * 1024  # larger indexes are only rewritten when the database closes
_DEFINITION = ("name, schema_name, table_name, column_name, key_column, metric, kind, options, dimension, build_id, "
               "version, stale")


@dataclass
class IndexInfo:
    name: str
    schema: str
    table: str
    column: str
    key: str
    metric: str
    kind: str
    options: dict
    dim: int
    build_id: str

    @property
    def qualified_table(self) -> str:
        return f"{_quote(self.schema)}.{_quote(self.table)}"


def serialization_failure(message: str) -> errors.OperationalError:
    return errors.OperationalError(f"could not serialize access: {message}; retry the transaction",
                                   sqlstate="40001")


# -- the write lock of one index ----------------------------------------------------------------

class WriteLock:
    """Held by one session from its first change of an index until its transaction ends.

    Waiting gives up with SQLSTATE 40001 after ``LOCK_TIMEOUT`` seconds, at once when the
    holder runs on the waiting thread (it could never finish), and takes over from a
    holder whose session was closed or collected."""

    def __init__(self, name: str):
        self.name = name
        self._condition = threading.Condition(threading.Lock())
        self._owner = None  # weakref to the holding Session
        self._owner_thread = None

    def holder(self):
        owner = self._owner() if self._owner is not None else None
        return None if owner is None or getattr(owner, "closed", False) else owner

    def acquire(self, session, timeout: float | None = None) -> None:
        timeout = LOCK_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                owner = self.holder()
                if owner is None or owner is session:
                    self._owner, self._owner_thread = weakref.ref(session), threading.get_ident()
                    return
                if self._owner_thread == threading.get_ident():
                    raise serialization_failure(
                        f"index {self.name} is being changed by another open transaction on this thread")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise serialization_failure(
                        f"index {self.name} is being changed by another transaction (waited {timeout:g} s)")
                self._condition.wait(min(left, 0.05))
                check = getattr(session, "check_cancel", None)
                if check is not None:
                    check()

    def release(self, session) -> None:
        with self._condition:
            if self._owner is not None and self._owner() in (session, None):
                self._owner = self._owner_thread = None
                self._condition.notify_all()


# -- per index and per transaction ----------------------------------------------------------------

class IndexEntry:
    """One index in this process: its definition, committed state and write lock."""

    def __init__(self, info: IndexInfo, *, committed: bool):
        self.info = info
        self.write_lock = WriteLock(info.name)
        self.mutex = threading.Lock()  # guards state and version (held briefly)
        self.loading = threading.Lock()  # one load at a time
        self.state: fx.IndexState | None = None  # the committed index (None: not loaded)
        self.version: int | None = None  # the committed version ``state`` matches (None: not known yet)
        self.stored = 0  # the version of the bytes in mldb.index_data
        self.committed = committed  # False while the CREATE INDEX that made it has not committed
        self.committing = False  # the lock holder has changes that may be committing now

    @property
    def build_id(self) -> str:
        return self.info.build_id

    def current(self) -> tuple[fx.IndexState | None, int | None]:
        with self.mutex:
            return self.state, self.version


@dataclass
class Txn:
    """What one session's open transaction did to indexes."""

    held: dict = field(default_factory=dict)  # build_id -> list of touched key arrays (write lock held)
    logged: dict = field(default_factory=dict)  # build_id -> version of the mldb.index_changes row inserted
    counts: dict = field(default_factory=dict)  # build_id -> the row count that row holds
    created: dict = field(default_factory=dict)  # build_id -> IndexEntry made by CREATE INDEX
    dropped: dict = field(default_factory=dict)  # build_id -> IndexEntry removed by DROP INDEX (or DROP TABLE)
    visible: dict = field(default_factory=dict)  # build_id -> version this transaction's snapshot sees
    renamed: dict = field(default_factory=dict)  # build_id -> (IndexEntry, its IndexInfo before ALTER TABLE RENAME)

    def changed(self, build_id: str) -> bool:
        return any(len(keys) for keys in self.held.get(build_id, ()))


class _Reader:
    """A private DuckDB connection on the database, outside any session's transaction:
    in autocommit mode it reads what is committed."""

    def __init__(self, database):
        self.con = database.root.cursor()

    def sql(self, sql: str, params=None):
        try:
            return self.con.execute(sql, params) if params is not None else self.con.execute(sql)
        except duckdb.Error as error:
            raise errors.translate(error) from None

    def check_cancel(self) -> None:
        pass

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.close()


class VectorState:
    """Per database: the FAISS indexes (definitions, committed states, write locks) and what
    each session's open transaction did to them."""

    def __init__(self, database=None):
        self._database = weakref.ref(database) if database is not None else lambda: None
        self.mutex = threading.RLock()
        self.entries: dict[str, IndexEntry] = {}
        self._loaded = False
        self.txns: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # Session -> Txn
        self.closed = False
        if database is not None and not database.read_only:
            _migrate(database.root)

    # -- definitions ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def reader(self):
        reader = _Reader(self._database())
        try:
            yield reader
        finally:
            reader.close()

    def _all(self) -> list[IndexEntry]:
        with self.mutex:
            if not self._loaded:
                self._load_definitions()
            return list(self.entries.values())

    def _load_definitions(self) -> None:
        database = self._database()
        if database is None:
            return
        with self.reader() as reader:
            table = _definitions_table(reader)
            rows = reader.sql(f"SELECT {_DEFINITION} FROM {table}").fetchall() if table else []
        for row in rows:
            entry = IndexEntry(_info(row), committed=True)
            entry.stored = row[10] or 0
            self.entries.setdefault(entry.build_id, entry)
        self._loaded = True

    def txn(self, session) -> Txn:
        with self.mutex:
            found = self.txns.get(session)
            if found is None:
                found = self.txns[session] = Txn()
            return found

    def visible(self, session) -> list[IndexEntry]:
        """Indexes this session sees: committed ones it did not drop, and the ones it created."""
        txn = self.txns.get(session)
        entries = self._all()
        if txn is None:
            return [entry for entry in entries if entry.committed]
        return [entry for entry in entries if (entry.committed and entry.build_id not in txn.dropped)
                or entry.build_id in txn.created]

    def find(self, session, name: str) -> IndexEntry | None:
        return next((e for e in self.visible(session) if e.info.name.lower() == name.lower()), None)

    def pending(self, name: str) -> IndexEntry | None:
        """An index of that name another transaction is creating."""
        return next((e for e in self._all() if not e.committed and e.info.name.lower() == name.lower()), None)

    def on_tables(self, session, names: set[str]) -> list[IndexEntry]:
        """Indexes on any of these (lower-case) table names that a write must follow: the
        ones this session sees, and the ones other transactions are creating (the write
        waits for them)."""
        txn = self.txns.get(session)
        dropped = txn.dropped if txn is not None else {}
        return [entry for entry in self._all() if entry.info.table.lower() in names and entry.build_id not in dropped]

    def table_names(self) -> set[str]:
        return {entry.info.table.lower() for entry in self._all()}

    # -- loading the committed state ------------------------------------------------------------------
    def committed_state(self, entry: IndexEntry) -> tuple[fx.IndexState | None, int | None]:
        """(state, version) of the committed index, loaded if needed; (None, None) when a
        commit moved on while loading (the caller searches exactly this time)."""
        state, version = entry.current()
        if state is not None:
            return state, version
        with entry.loading:
            state, version = entry.current()
            if state is not None:
                return state, version
            loaded = self._load(entry)
            if loaded is None:
                return None, None
            state, version, stored = loaded
            with entry.mutex:
                if entry.state is None and (entry.version is None or entry.version <= version):
                    entry.state, entry.version, entry.stored = state, version, stored
                return (entry.state, entry.version) if entry.version == version else (None, None)

    def _load(self, entry: IndexEntry):
        """(state, version, stored version) from the bytes and the table, in one snapshot."""
        info = entry.info
        with self.reader() as reader:
            reader.sql("BEGIN TRANSACTION")
            try:
                table = _definitions_table(reader)
                row = one(reader, f"SELECT version, stale FROM {table} WHERE build_id = ?",
                                 [info.build_id]) if table else None
                if row is None:
                    return None  # dropped meanwhile
                stored, stale = row[0] or 0, bool(row[1])
                version = max(stored, _latest_change(reader, info.build_id) or 0)
                data = one(reader, "SELECT data FROM mldb.index_data WHERE build_id = ?", [info.build_id])
                if data is None or data[0] is None:
                    state = build_state(reader, info)
                else:
                    state = fx.deserialize(info.name, data[0], info.metric, info.kind, info.options,
                                           lambda keys: _vectors_of(reader, info, keys))
                    if stale or version > stored:
                        state, _ = sync(reader, info, state)
                if state.needs_compaction:
                    state = build_state(reader, info)
            finally:
                with contextlib.suppress(errors.Error):
                    reader.sql("COMMIT")
        return state, version, stored

    def locked_state(self, entry: IndexEntry) -> fx.IndexState:
        """The committed state for the session that holds the write lock (the committed
        table cannot move while it is held)."""
        state, _ = self.committed_state(entry)
        if state is None:
            state, _ = self.committed_state(entry)
        if state is None:
            raise serialization_failure(f"index {entry.info.name} changed while it was loaded")
        return state

    # -- writes --------------------------------------------------------------------------------------------
    def lock_for_write(self, session, entry: IndexEntry) -> bool:
        """Take the index's write lock for the session's transaction (once); False when the
        index went away meanwhile (its creation rolled back, or it was dropped)."""
        txn = self.txn(session)
        if entry.build_id in txn.held or entry.build_id in txn.created:
            return True
        entry.write_lock.acquire(session)
        with self.mutex:
            alive = self.entries.get(entry.build_id) is entry and entry.committed
        if not alive:
            entry.write_lock.release(session)
            return False
        txn.held[entry.build_id] = []
        return True

    def holds(self, session, entry: IndexEntry) -> bool:
        txn = self.txns.get(session)
        return txn is not None and (entry.build_id in txn.held or entry.build_id in txn.created)

    def follow(self, session, entry: IndexEntry, vectors_changed: bool = True) -> None:
        """After a statement of the lock holder: note the keys whose row now differs from the
        committed index, check the new rows, and record the change in the transaction."""
        info = entry.info
        txn = self.txn(session)
        if entry.build_id in txn.created:
            state, changed = sync(session, info, entry.state, vectors_changed)  # not published yet: follow it
            entry.state = state
            if changed:  # (the stored bytes are the build's: a load catches up)
                session.sql("UPDATE mldb.index_definitions SET row_count = ?, stale = true WHERE build_id = ?",
                            [state.live_count, info.build_id])
            return
        state = self.locked_state(entry)
        keys, hashes = read_hashes(session, info, vectors_changed)
        live = np.flatnonzero(state.alive)
        live_hashes = state.hashes[live] if vectors_changed else None
        gone = state.keys[live[~_same(state.keys[live], live_hashes, keys, hashes)]]
        new = keys[~_same(keys, hashes, state.keys[live], live_hashes)]
        if len(new):
            check_finite(read_rows(session, info, new)[2], info)
        if not (len(gone) or len(new)) and not txn.changed(info.build_id):
            return
        txn.held[info.build_id].extend([gone, new])
        version = txn.logged.get(info.build_id)
        if version is None:
            version = (entry.version or 1) + 1
            session.sql("INSERT INTO mldb.index_changes (build_id, version, row_count, changed_at) "
                        "VALUES (?, ?, ?, now())", [info.build_id, version, len(keys)])
            txn.logged[info.build_id] = version
        elif txn.counts.get(info.build_id) != len(keys):
            session.sql("UPDATE mldb.index_changes SET row_count = ?, changed_at = now() "
                        "WHERE build_id = ? AND version = ?", [len(keys), info.build_id, version])
        txn.counts[info.build_id] = len(keys)
        entry.committing = True

    def create(self, session, info: IndexInfo) -> IndexEntry:
        """Register an index being created by this session's transaction (its write lock held)."""
        entry = IndexEntry(info, committed=False)
        with self.mutex:
            txn = self.txn(session)
            if any(e.info.name.lower() == info.name.lower() and e.build_id not in txn.dropped for e in self._all()):
                raise serialization_failure(f"index {info.name} is being created by another transaction")
            entry.write_lock.acquire(session)
            self.entries[info.build_id] = entry
            self.txn(session).created[info.build_id] = entry
        return entry

    def store_created(self, session, entry: IndexEntry, state: fx.IndexState) -> None:
        """The catalog rows and bytes of a new index, in the creating transaction."""
        info = entry.info
        entry.state, entry.version, entry.stored = state, 1, 1
        session.sql("INSERT INTO mldb.index_definitions (name, schema_name, table_name, column_name, key_column, "
                    "metric, kind, options, dimension, row_count, build_id, version, stale) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, false)",
                    [info.name, info.schema, info.table, info.column, info.key, info.metric, info.kind,
                     json.dumps(info.options), state.dim, state.live_count, info.build_id])
        session.sql("INSERT INTO mldb.index_data (build_id, data) VALUES (?, ?)", [info.build_id, fx.serialize(state)])

    def abandon(self, session, entry: IndexEntry) -> None:
        """A CREATE INDEX failed after ``create``: forget the index (its rows roll back with
        the statement's transaction, or poison the user's)."""
        with self.mutex:
            txn = self.txns.get(session)
            if txn is not None:
                txn.created.pop(entry.build_id, None)
            if self.entries.get(entry.build_id) is entry:
                self.entries.pop(entry.build_id)
        entry.write_lock.release(session)

    def drop(self, session, entry: IndexEntry) -> None:
        """Remove the index in the session's transaction (the caller holds its write lock)."""
        build_id = entry.build_id
        for table in ("mldb.index_data", "mldb.index_changes", "mldb.index_definitions"):
            session.sql(f"DELETE FROM {table} WHERE build_id = ?", [build_id])
        txn = self.txn(session)
        if build_id in txn.created:
            with self.mutex:
                txn.created.pop(build_id)
                self.entries.pop(build_id, None)
            entry.write_lock.release(session)
            return
        txn.dropped[build_id] = entry

    def rename_table(self, session, entry: IndexEntry, table: str) -> None:
        """ALTER TABLE ... RENAME TO: the index follows its table (as PostgreSQL's do); the
        old name comes back if the transaction rolls back. The caller holds the write lock."""
        session.sql("UPDATE mldb.index_definitions SET table_name = ? WHERE build_id = ?", [table, entry.build_id])
        with self.mutex:
            self.txn(session).renamed.setdefault(entry.build_id, (entry, entry.info))
            entry.info = replace(entry.info, table=table)

    # -- the end of a transaction ------------------------------------------------------------------------
    def committed(self, session) -> None:
        with self.mutex:
            txn = self.txns.pop(session, None)
        if txn is None:
            return
        try:
            for entry in txn.created.values():
                self._publish_created(entry)
            for build_id in txn.dropped:
                with self.mutex:
                    self.entries.pop(build_id, None)
            for build_id, touched in txn.held.items():
                entry = self.entries.get(build_id)
                if entry is not None and build_id not in txn.dropped and build_id in txn.logged:
                    self._apply(entry, touched, txn.logged[build_id])
        finally:
            self._release(session, txn)

    def rolled_back(self, session) -> None:
        with self.mutex:
            txn = self.txns.pop(session, None)
            if txn is None:
                return
            for build_id in txn.created:
                self.entries.pop(build_id, None)
            for entry, info in txn.renamed.values():
                entry.info = info
        self._release(session, txn)

    def _release(self, session, txn: Txn) -> None:
        for build_id in [*txn.held, *txn.created]:
            entry = (txn.created.get(build_id) or self.entries.get(build_id) or txn.dropped.get(build_id))
            if entry is not None:
                entry.committing = False
                entry.write_lock.release(session)

    def _publish_created(self, entry: IndexEntry) -> None:
        """A CREATE INDEX committed: catch up with writes other transactions committed after
        the index was built from the creator's snapshot (see ``statements.create_index``)."""
        info = entry.info
        try:
            with self.reader() as reader:
                reader.sql("BEGIN TRANSACTION")
                state, changed = sync(reader, info, entry.state)
                version = 1
                if changed:
                    version = 2
                    reader.sql("INSERT INTO mldb.index_changes (build_id, version, row_count, changed_at) "
                               "VALUES (?, 2, ?, now())", [info.build_id, state.live_count])
                reader.sql("COMMIT")
        except errors.Error:
            state, version = None, None  # loaded again on first use
        with entry.mutex:
            entry.state, entry.version = state, version
            entry.committed = True

    def _apply(self, entry: IndexEntry, touched: list, latest: int) -> None:
        """Publish a committed change (version ``latest``): the touched keys' rows as the
        committed table now has them. The write lock is still held, so no other change of
        the table can commit meanwhile."""
        info = entry.info
        keys = np.unique(np.concatenate(touched)).astype(np.int64)
        try:
            with entry.mutex:
                base, version = entry.state, entry.version
            if base is not None and version is not None and version >= latest:
                return  # a load already saw this commit
            if base is None or version != latest - 1:
                with entry.mutex:
                    entry.state, entry.version = None, latest  # loaded again on first use
                return
            with self.reader() as reader:
                rows = read_rows(reader, info, keys)
            live = np.flatnonzero(base.alive)
            state = fx.add(fx.remove(base, live[np.isin(base.keys[live], keys)]), *rows)
            if state.needs_compaction:
                with self.reader() as reader:
                    state = build_state(reader, info)
            with entry.mutex:
                entry.state, entry.version = state, latest
        except (errors.Error, RuntimeError):
            with entry.mutex:
                entry.state, entry.version = None, None  # whatever went wrong, the next use loads it again
            return
        if latest - entry.stored >= CHECKPOINT_CHANGES and _estimated_bytes(state) <= PERSIST_BYTES:
            with contextlib.suppress(errors.Error, RuntimeError):
                self.checkpoint(entry)

    # -- checkpoints --------------------------------------------------------------------------------------
    def checkpoint(self, entry: IndexEntry) -> None:
        """Write the committed state's bytes and fold the change rows into the definition
        (the caller holds the write lock, or the database is closing)."""
        state, version = entry.current()
        if state is None or version is None or version <= entry.stored:
            return
        data = fx.serialize(state)
        with self.reader() as reader:
            reader.sql("BEGIN TRANSACTION")
            try:
                build_id = entry.build_id
                reader.sql("UPDATE mldb.index_data SET data = ? WHERE build_id = ?", [data, build_id])
                reader.sql("UPDATE mldb.index_definitions SET version = ?, row_count = ?, stale = false, "
                           "updated_at = now() WHERE build_id = ?", [version, state.live_count, build_id])
                reader.sql("DELETE FROM mldb.index_changes WHERE build_id = ? AND version <= ?", [build_id, version])
                reader.sql("COMMIT")
            except BaseException:
                with contextlib.suppress(errors.Error):
                    reader.sql("ROLLBACK")
                raise
        entry.stored = version

    def close(self) -> None:
        """The database closes: write the bytes of every index changed since they were stored."""
        if self.closed:
            return
        self.closed = True
        database = self._database()
        with self.mutex:
            entries = list(self.entries.values())
        if database is not None and not database.read_only:
            for entry in entries:
                if entry.committed:
                    with contextlib.suppress(errors.Error, RuntimeError, duckdb.Error):
                        self.checkpoint(entry)
        with self.mutex:
            self.entries.clear()
            self.txns = weakref.WeakKeyDictionary()


def vector_state(session) -> VectorState:
    return session.database.state("vectors")


# -- reads for planning and searching -------------------------------------------------------------------

def find(session, name: str) -> IndexInfo | None:
    entry = vector_state(session).find(session, name)
    return entry.info if entry is not None else None


def for_table(session, schema: str | None, table: str) -> list[IndexInfo]:
    """Indexes on ``[schema.]table`` (unqualified: the current schema) this session sees."""
    table = table.lower()
    found = [entry.info for entry in vector_state(session).visible(session) if entry.info.table.lower() == table]
    if not found:
        return []
    if schema is None:
        schema = session.current_schema()
    return [info for info in found if info.schema.lower() == schema.lower()]


def searchable(session, info: IndexInfo) -> fx.IndexState | None:
    """The FAISS state a search by ``session`` may use, or None: then DuckDB searches exactly.

    - the session changed the index in its open transaction: None (its changes are not
      in the committed state);
    - the session created it in its open transaction: the state built then;
    - inside a transaction: the committed state if its version is the one this
      transaction's snapshot sees (one catalog read per transaction);
    - otherwise the committed state, unless a change of it is being committed right now.
    """
    vectors = vector_state(session)
    entry = vectors.entries.get(info.build_id)
    if entry is None:
        return None
    txn = vectors.txns.get(session)
    if txn is not None and info.build_id in txn.created:
        return entry.state
    if txn is not None and txn.changed(info.build_id):
        return None
    if not entry.committed:
        return None
    if session.in_transaction:
        if txn is None or info.build_id not in txn.visible:
            row = one(session, "SELECT version FROM mldb.indexes WHERE build_id = ?", [info.build_id])
            vectors.txn(session).visible[info.build_id] = row[0] if row else None
            txn = vectors.txns.get(session)
        visible = txn.visible[info.build_id]
        state, version = vectors.committed_state(entry)
        return state if visible is not None and version == visible else None
    if entry.committing:
        return None
    state, _ = vectors.committed_state(entry)
    return state


def current_state(session, info: IndexInfo) -> fx.IndexState:
    """The committed FAISS state of an index, loaded if needed (for tools and benchmarks)."""
    vectors = vector_state(session)
    entry = vectors.entries.get(info.build_id)
    state = vectors.committed_state(entry)[0] if entry is not None else None
    if state is None:
        raise errors.OperationalError(f"index {info.name} is not available now", sqlstate="55000")
    return state


def catalog_ready(session) -> bool:
    """False on a read-only database that mldb never opened for writing (no catalog)."""
    if not session.database.read_only:
        return True
    row = one(session, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'mldb' "
                      "AND table_name IN ('index_definitions', 'indexes')")
    return bool(row[0])


def _estimated_bytes(state: fx.IndexState) -> int:
    return fx.index_bytes(len(state.keys), state.dim, state.kind, int(state.options.get("m", 32)))


def new_build_id() -> str:
    return uuid.uuid4().hex


# -- the catalog ----------------------------------------------------------------------------------

def _info(row) -> IndexInfo:
    name, schema, table, column, key, metric, kind, options, dim, build_id = row[:10]
    return IndexInfo(name, schema, table, column, key, metric, kind, json.loads(options), dim, build_id)


def _definitions_table(reader) -> str | None:
    """Where the definitions are: mldb.index_definitions, or in a file written before it
    existed and opened read-only, the old mldb.indexes table."""
    names = _catalog_tables(reader)
    if "index_definitions" in names:
        return "mldb.index_definitions"
    return "mldb.indexes" if "indexes" in names else None


def _catalog_tables(reader) -> set[str]:
    rows = reader.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'mldb' "
                      "AND table_name IN ('index_definitions', 'indexes', 'index_changes') "
                      "AND database_name = current_database()").fetchall()
    return {name for (name,) in rows}


def _latest_change(reader, build_id: str) -> int | None:
    if "index_changes" not in _catalog_tables(reader):
        return None  # an old file opened read-only: no change rows
    return one(reader, "SELECT max(version) FROM mldb.index_changes WHERE build_id = ?", [build_id])[0]


def _migrate(con) -> None:
    """A file written before mldb.indexes became a view: move its rows into mldb.index_definitions."""
    from mldb import catalog

    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'mldb' "
                        "AND table_name = 'indexes' AND database_name = current_database()").fetchall()[0][0]
    if not found:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("INSERT INTO mldb.index_definitions BY NAME SELECT * REPLACE (true AS stale) FROM mldb.indexes")
        con.execute("DROP TABLE mldb.indexes")
        con.execute(catalog.INDEXES_VIEW)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
