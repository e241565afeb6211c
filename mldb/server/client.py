"""One client connection: start-up, authentication, then the simple and extended query loop.

Each connection runs in its own thread with its own mldb ``Session`` (a DuckDB cursor
of the served database), so it has its own transaction. Everything a statement does
goes through ``Session.execute``; this module only translates between that and the
wire: ``protocol`` builds the bytes, ``types`` encodes values, ``describe`` answers
Describe before execution, ``pg_catalog`` answers what client tools ask DuckDB
cannot, ``copy_in`` / ``copy_out`` carry COPY FROM STDIN / TO STDOUT, ``tls`` the
server's certificate.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
import traceback

from mldb import errors
from mldb.execution import canceled
from mldb.frontend import split_statements
from mldb.result import Result
from mldb.server import auth, copy, copy_in, copy_out, pg_catalog, protocol
from mldb.server.portal import Portal, Prepared, command_tag, row_fields
from mldb.server.protocol import ConnectionClosed, ProtocolViolation
from mldb.server.types import param_decoder

log = logging.getLogger("mldb.server")

_FLUSH_AT = 1 << 16
_COPY_BATCH = 65_536  # rows per Arrow batch of COPY TO STDOUT
_TX_END = frozenset({"COMMIT", "END", "ROLLBACK", "ABORT"})
_TX_BEGIN = frozenset({"BEGIN", "START"})
_IMPLICIT_OK = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "FROM", "INSERT", "UPDATE", "DELETE", "MERGE",
                          "CREATE", "DROP", "ALTER", "EXPLAIN", "DESCRIBE", "SHOW", "COPY", "("})


class ClientError(Exception):
    """An error for the client that is not an mldb error (protocol misuse: 08P01, 26000, 34000, ...)."""

    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


class Client:
    def __init__(self, server, sock, address):
        self.server, self.sock, self.address = server, sock, address
        self.rfile = sock.makefile("rb", buffering=0)  # unbuffered until start-up: TLS may take the socket over
        self.out: list[bytes] = []
        self.out_size = 0
        self.session = None
        self.params: dict[str, str] = {}
        self.transaction = b"I"  # I idle, T in a transaction block, E failed transaction block
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.busy = False  # a message is being handled (the watchdog checks the socket meanwhile)
        self.message = 0  # how many messages were handled (numbers the one being handled)
        self.cancel_message = -1  # the message a CancelRequest asked to stop (the watchdog follows it up)
        self.interrupted_at = float("-inf")  # when the server last interrupted this connection's statement
        self.queries = 0
        self.outcome = "closed"
        self.pid = self.secret = 0
        self.encrypted = False  # TLS (mldb.server.tls)
        self.started = time.monotonic()
        self.authenticated, self.user = False, None  # set by the server, under its lock (limits.py)
        self.dropped = None  # why the server closed it before it authenticated
        self.refusal = server.register(self)  # last: other threads may look at it from now on

    # -- lifetime ------------------------------------------------------------------------------
    def serve(self) -> None:
        try:
            # (the watchdog enforces the total; a refused one holds no slot: a second per read)
            self.sock.settimeout(1.0 if self.refusal else self.server.limits.auth_timeout)
            if self._startup():
                self.sock.settimeout(None)
                self._loop()
        except ConnectionClosed:
            self.outcome = self.outcome if self.outcome != "ok" else "client disconnected"
        except ProtocolViolation as error:
            self.outcome = f"protocol violation: {error}"
            self._fatal(str(error), "08P01")
        except TimeoutError:  # (only start-up reads have a timeout)
            self.outcome = "authentication timeout"
        except OSError as error:
            self.outcome = f"socket error: {error.strerror or error}"
        except Exception:  # noqa: BLE001 - a bug here must end this connection only, and be logged
            log.error("internal error in connection %d:\n%s", self.pid, traceback.format_exc())
            self.outcome = "internal error"
            self._fatal("internal error in mldb serve (see the server log)", "XX000")
        finally:
            self._close()
            self.server.unregister(self)
            self._log(self.dropped or self.outcome)

    def _log(self, outcome: str) -> None:
        log.info("connection %d from %s:%s user=%s app=%s queries=%d duration=%.3fs %s", self.pid, *self.address[:2],
                 self.params.get("user", "-"), self.params.get("application_name", "-") or "-", self.queries,
                 time.monotonic() - self.started, outcome)

    def _close(self) -> None:
        for portal in self.portals.values():
            portal.close()
        if self.session is not None:
            self.session.close()  # closing the DuckDB cursor rolls back an open transaction
        self._discard_input()
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass

    def _discard_input(self) -> None:
        """Read what the client sent that was not read (start-up is read unbuffered): a socket closed
        with unread bytes resets the connection, and the client could lose our last error message."""
        with contextlib.suppress(OSError, ValueError):
            self.sock.setblocking(False)
            for _ in range(16):
                if not self.sock.recv(1 << 16):
                    break

    # -- output --------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)
        if self.out_size >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self.out:
            data, self.out, self.out_size = b"".join(self.out), [], 0
            self.sock.sendall(data)

    def _fatal(self, message: str, sqlstate: str) -> None:
        try:
            self.send(protocol.error_fields(b"E", {"S": "FATAL", "V": "FATAL", "C": sqlstate, "M": message}))
            self.flush()
        except OSError:
            pass

    # -- start-up ------------------------------------------------------------------------------
    def _startup(self) -> bool:
        code, body = protocol.read_startup(self.rfile)
        for _ in range(2):  # SSLRequest and/or GSSENCRequest come first
            if code not in (protocol.SSL_REQUEST, protocol.GSSENC_REQUEST) or self.encrypted:
                break
            if code == protocol.SSL_REQUEST and self.server.tls is not None:
                self._start_tls()
            else:
                self.sock.sendall(b"N")  # no GSSAPI; no TLS unless --tls-cert/--tls-key
            code, body = protocol.read_startup(self.rfile)
        self.rfile.close()
        self.rfile = self.sock.makefile("rb", buffering=1 << 16)
        if code == protocol.CANCEL_REQUEST:
            self.outcome = "cancel request"
            payload = protocol.Payload(body)
            self.server.cancel(payload.int32(), payload.int32())
            return False
        if code >> 16 != 3:
            self.outcome = f"unsupported protocol {code >> 16}.{code & 0xFFFF}"
            self._fatal(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.0", "0A000")
            return False
        if self.refusal is not None:  # (after the startup packet: libpq reads no error before it)
            self.outcome = f"refused: {self.refusal}"
            self._fatal(self.refusal, "53300")
            return False
        self.params = protocol.startup_parameters(body)
        self.params.update(pg_catalog.command_line_options(self.params.get("options", "")))
        if code != protocol.PROTOCOL_3 or any(name.startswith("_pq_.") for name in self.params):
            self._negotiate_version()
        if self.server.tls_required and not self.encrypted:
            self.outcome = "refused: no TLS"
            self._fatal("this server accepts only TLS connections: connect with sslmode=require", "28000")
            return False
        if not self.params.get("user"):
            self.outcome = "no user name"
            self._fatal("no PostgreSQL user name specified in startup packet", "28000")
            return False
        if not self._authenticate():
            return False
        refusal = self.server.authenticated(self, self.params["user"])
        if refusal is not None:
            self.outcome = f"refused: {refusal}"
            self._fatal(refusal, "53300")
            return False
        self.session = self.server.database.session()
        self.session.restrict(self.server.access)  # its settings stay its own; no admin statements, few files
        self.session.load_udfs_allowed = self.server.access.allow_admin  # LOAD UDFS runs a file's code here
        self._greet()
        return True

    def _start_tls(self) -> None:
        """Answer 'S' and run the TLS handshake: the rest of the connection is encrypted. The SSLRequest
        was read unbuffered, so no byte the client sent before the handshake can be read as encrypted."""
        self.sock.sendall(b"S")
        self.rfile.close()
        self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        self.rfile = self.sock.makefile("rb", buffering=0)
        self.encrypted = True

    def _negotiate_version(self) -> None:
        """NegotiateProtocolVersion: we speak 3.0 and none of the ``_pq_.`` options."""
        options = [name for name in self.params if name.startswith("_pq_.")]
        body = struct.pack("!ii", 0, len(options)) + b"".join(map(protocol.cstr, options))
        self.send(protocol.message(b"v", body))
        for name in options:
            self.params.pop(name)

    def _authenticate(self) -> bool:
        secret = self.server.secret
        if secret is None:
            return True
        try:
            auth.authenticate(self.server.auth_method, secret, self.params["user"], self._send_now,
                              self._password_message)
        except auth.AuthenticationFailed:
            self.outcome = "authentication failed"
            time.sleep(self.server.limits.auth_delay)  # as PostgreSQL's auth_delay: slows password guessing
            self._fatal(f'password authentication failed for user "{self.params["user"]}"', "28P01")
            return False
        return True

    def _send_now(self, data: bytes) -> None:
        self.send(data)
        self.flush()

    def _password_message(self) -> bytes:
        """A PasswordMessage/SASL response body, refused before it is read when over MAX_AUTH_MESSAGE."""
        kind, body = protocol.read_message(self.rfile, protocol.MAX_AUTH_MESSAGE)
        if kind != b"p":
            raise ProtocolViolation(f"expected password response, got message type {kind!r}")
        return body

    def _greet(self) -> None:
        self.send(protocol.authentication(0))
        pg_catalog.apply_startup(self.params, self.session)
        for name, value in pg_catalog.parameter_status(self.params, self.session).items():
            self.send(protocol.parameter_status(name, value))
        self.send(protocol.backend_key_data(self.pid, self.secret))
        self.send(protocol.ready_for_query(self.transaction))
        self.flush()
        self.outcome = "ok"

    # -- the message loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        handlers = {b"Q": self._query, b"P": self._parse, b"B": self._bind, b"D": self._describe,
                    b"E": self._execute, b"C": self._close_message, b"S": self._sync, b"H": lambda _: self.flush(),
                    # CopyData, CopyDone and CopyFail after a COPY FROM STDIN failed are dropped, as PostgreSQL does
                    b"d": lambda _: None, b"c": lambda _: None, b"f": lambda _: None}
        skipping = False  # after an error in the extended protocol: ignore messages until Sync
        while True:
            kind, body = protocol.read_message(self.rfile)
            if self.server.stopping:
                self._fatal("terminating connection due to administrator command", "57P01")
                self.outcome = "server shut down"
                return
            if kind == b"X":
                return
            handler = handlers.get(kind)
            if handler is None:
                raise ProtocolViolation(f"invalid frontend message type {kind!r}")
            if skipping and kind not in (b"S", b"Q"):
                continue
            skipping = False
            self.message += 1
            self.busy = True
            try:
                handler(body)
            except (ConnectionClosed, OSError, ProtocolViolation):
                raise
            except Exception as error:  # noqa: BLE001 - every failure becomes an ErrorResponse
                self._error(error)
                skipping = kind != b"Q"
                if kind == b"Q":
                    self._ready()
            finally:
                self.busy = False

    def _error(self, error: Exception) -> None:
        if self.transaction == b"T":
            self.transaction = b"E"
        self.send(protocol.error_fields(b"E", _error_fields(error)))

    def _ready(self) -> None:
        # Not busy from before the client can know the statement is over: one that hangs up as soon
        # as it has its answer did not leave during a statement (the watchdog reads busy after it).
        self.busy = False
        self.send(protocol.ready_for_query(self.transaction))
        self.flush()

    # -- simple query --------------------------------------------------------------------------
    def _query(self, body: bytes) -> None:
        sql = protocol.Payload(body).cstring()
        self._close_portal("")
        parts = _statements(sql)
        statements = [Prepared.create(pg_catalog.translate_introspection(self, text), []) for text, _ in parts]
        with self._implicit_transaction(statements):
            for prepared, (_, offset) in zip(statements, parts):
                portal = Portal(prepared, None, [])
                with _positioned_from(offset):
                    self._run(portal)
                    self._send_rows(portal, 0, describe_first=True)
        if not statements:
            self.send(protocol.EMPTY_QUERY)
        self._ready()

    @contextlib.contextmanager
    def _implicit_transaction(self, statements: list[Prepared]):
        """As PostgreSQL: the statements of one Query message commit together or not at all
        (unless the message controls transactions itself or holds statements DuckDB will
        not run inside one)."""
        words = {prepared.first_word for prepared in statements}
        if len(statements) < 2 or self.transaction != b"I" or not words <= _IMPLICIT_OK:
            yield
            return
        with self.session.transaction():
            yield

    # -- extended query ------------------------------------------------------------------------
    def _parse(self, body: bytes) -> None:
        payload = protocol.Payload(body)
        name, sql, oids = payload.cstring(), payload.cstring(), payload.int32_list()
        if name and name in self.statements:
            raise ClientError(f'prepared statement "{name}" already exists', "42P05")
        if len(split_statements(sql) or ()) > 1:
            raise ClientError("cannot insert multiple commands into a prepared statement", "42601")
        self.statements[name] = Prepared.create(pg_catalog.translate_introspection(self, sql), oids)
        self.send(protocol.PARSE_COMPLETE)

    def _bind(self, body: bytes) -> None:
        payload = protocol.Payload(body)
        portal_name, name = payload.cstring(), payload.cstring()
        formats, values, result_formats = payload.int16_list(), payload.values(), payload.int16_list()
        prepared = self._prepared(name)
        if len(values) != prepared.param_count:
            raise ClientError(f'bind message supplies {len(values)} parameters, but prepared statement "{name}" '
                              f"requires {prepared.param_count}", "08P01")
        if portal_name and portal_name in self.portals:
            raise ClientError(f'portal "{portal_name}" already exists', "42P03")
        self._close_portal(portal_name)
        oids = prepared.param_oids(self.session) if values and 1 in formats else prepared.given_oids
        self.portals[portal_name] = Portal(prepared, _decode(values, formats, oids), result_formats)
        self.send(protocol.BIND_COMPLETE)

    def _describe(self, body: bytes) -> None:
        payload = protocol.Payload(body)
        kind, name = payload.byte(), payload.cstring()
        if kind == b"S":
            prepared = self._prepared(name)
            self._settle_portals()
            oids, columns = prepared.param_oids(self.session), prepared.columns(self.session)
            self.send(protocol.parameter_description(oids))
            self.send(protocol.row_description(row_fields(columns, [])) if columns else protocol.NO_DATA)
        elif kind == b"P":
            portal = self._portal(name)
            if portal.result is None and not portal.done and _copy_of(portal.prepared) is not None:
                self.send(protocol.NO_DATA)  # a COPY to or from the client returns no rows
                return
            self._run(portal)
            fields = portal.fields()
            self.send(protocol.row_description(fields) if fields else protocol.NO_DATA)
        else:
            raise ProtocolViolation(f"invalid Describe kind {kind!r}")

    def _execute(self, body: bytes) -> None:
        payload = protocol.Payload(body)
        portal = self._portal(payload.cstring())
        max_rows = payload.int32()
        self._run(portal)
        self._send_rows(portal, max(max_rows, 0), describe_first=False)

    def _close_message(self, body: bytes) -> None:
        payload = protocol.Payload(body)
        kind, name = payload.byte(), payload.cstring()
        if kind == b"S":
            self.statements.pop(name, None)
        elif kind == b"P":
            self._close_portal(name)
        else:
            raise ProtocolViolation(f"invalid Close kind {kind!r}")
        self.send(protocol.CLOSE_COMPLETE)

    def _sync(self, body: bytes) -> None:
        if self.transaction == b"I":
            for name in list(self.portals):
                self._close_portal(name)
        self._ready()

    def _prepared(self, name: str) -> Prepared:
        prepared = self.statements.get(name)
        if prepared is None:
            raise ClientError(f'prepared statement "{name}" does not exist', "26000")
        return prepared

    def _portal(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise ClientError(f'portal "{name}" does not exist', "34000")
        return portal

    def _close_portal(self, name: str) -> None:
        portal = self.portals.pop(name, None)
        if portal is not None:
            portal.close()

    def _settle_portals(self) -> None:
        """Keep other portals' pending rows readable before this session's cursor runs again."""
        for portal in self.portals.values():
            portal.detach()

    # -- running a statement -------------------------------------------------------------------
    def _run(self, portal: Portal) -> None:
        if portal.result is not None or portal.done:
            return
        prepared = portal.prepared
        if self.transaction == b"E" and prepared.first_word not in _TX_END:
            raise ClientError("current transaction is aborted, commands ignored until end of transaction block",
                              "25P02")
        self._settle_portals()
        self.queries += 1
        statement = _copy_of(prepared)
        if statement is not None:
            run = self._copy_in if statement.incoming else self._copy_out
            portal.finish(Result.done("COPY"), run(statement, portal.params))
            return
        answer = self._transaction_control(prepared.first_word) or pg_catalog.intercept(self, prepared.sql)
        portal.finish(answer if answer is not None else self.session.execute(prepared.sql, portal.params))
        if prepared.first_word in _TX_BEGIN:
            self.transaction = b"T"
        elif prepared.first_word in _TX_END:
            self.transaction = b"I"

    def _transaction_control(self, word: str) -> Result | None:
        """BEGIN inside a block, COMMIT/ROLLBACK outside one, and ending a failed block, as PostgreSQL does."""
        if word in _TX_BEGIN and self.transaction == b"T":
            self._notice("WARNING", "25001", "there is already a transaction in progress")
            return Result.done("BEGIN" if word == "BEGIN" else "START TRANSACTION")
        if word not in _TX_END or self.transaction == b"T":
            return None
        tag = "COMMIT" if word in ("COMMIT", "END") else "ROLLBACK"
        if self.transaction == b"I":
            self._notice("WARNING", "25P01", "there is no transaction in progress")
            return Result.done(tag)
        with contextlib.suppress(errors.Error):  # DuckDB may have ended the failed transaction already
            self.session.execute("ROLLBACK")
        return Result.done("ROLLBACK")

    # -- COPY FROM STDIN / TO STDOUT (mldb.server.copy) ------------------------------------------
    def _copy_in(self, statement: copy.Copy, params) -> str:
        """CopyInResponse, spool the CopyData, then one INSERT through the session: ``COPY n``."""
        targets = copy_in.columns_sql(copy.target_description(self.session, statement))
        spool = copy_in.Spool(statement.options, floats=any(kind in ("FLOAT", "DOUBLE") for _, kind in targets))
        try:
            load = copy_in.load_sql(statement, targets, spool.path)  # (its option errors come before any data)
            self.send(protocol.copy_response(b"G", len(targets)))
            self.flush()
            self._receive_copy(spool)
            if self.cancel_message == self.message:
                raise canceled()
            if statement.options.header == "match":
                self._match_header(spool.path, statement.options, targets)
            load = copy_in.load_sql(statement, targets, spool.path, spool)
            try:
                with self.session.transaction():  # the count check below undoes a short load
                    with load.registered(self.session) as sql:
                        result = self.session.execute(sql)
                    copy_in.check_count(statement, spool, max(result.rowcount, 0))
                    found = self._spooled_row(copy_in.range_sql(statement, targets, spool.path, spool))
                    if found is not None:
                        raise copy_in.range_error(statement, targets, found)
            except errors.Error as error:
                raise self._copy_error(error, statement, targets, spool) from None
            return f"COPY {max(result.rowcount, 0)}"
        finally:
            spool.close()

    def _copy_error(self, error: errors.Error, statement: copy.Copy, targets, spool: copy_in.Spool) -> errors.Error:
        """A malformed line (22P04, bad_copy_file_format) or a value of the wrong type (22P02) with
        its line number; a value converted in SQL (an array, a blob) is found by a second read."""
        if "CSV Error" in str(error):
            sqlstate = error.sqlstate if error.sqlstate.startswith("22") else "22P04"
            return errors.DataError(copy_in.clean_error(str(error), statement, targets), sqlstate=sqlstate)
        if not error.sqlstate.startswith("22"):
            return error
        try:
            found = self._spooled_row(copy_in.locate_sql(statement, targets, spool.path, spool))
        except errors.Error:  # (inside the user's failed transaction block: DuckDB's message as it is)
            found = None
        if found is None:
            return error
        return errors.DataError(copy_in.located_error(statement, targets, str(error), found), sqlstate=error.sqlstate)

    def _receive_copy(self, spool: copy_in.Spool) -> None:
        """CopyData into the spool until CopyDone; CopyFail ends it with an error (Flush and Sync
        are ignored here: some drivers send them after every Execute)."""
        while True:
            kind, body = protocol.read_message(self.rfile)
            if kind == b"d":
                try:
                    spool.write(body)
                except OSError as error:
                    raise ClientError(f"could not write COPY data to a temporary file: {error.strerror}",
                                      "53100") from None
            elif kind == b"c":
                spool.finish()
                return
            elif kind == b"f":
                raise ClientError(f"COPY from stdin failed: {protocol.Payload(body).cstring()}", "57014")
            elif kind not in (b"H", b"S"):
                raise ProtocolViolation(f"unexpected message type {kind!r} during COPY from stdin")

    def _spooled_row(self, spooled: copy_in.Spooled | None) -> tuple | None:
        """The first row of a statement over the spool's rows (None for no statement)."""
        if spooled is None:
            return None
        with spooled.registered(self.session) as sql:
            return self.session.sql(sql).fetchone()

    def _match_header(self, path: str, options: copy.Options, targets: list[tuple[str, str]]) -> None:
        row = self._spooled_row(copy_in.header_sql(path, options, len(targets))) or ()
        for number, ((name, _), found) in enumerate(zip(targets, row), 1):
            if found != name[1:-1].replace('""', '"'):
                raise ClientError(f'column name mismatch in header line field {number}: got "{found}", '
                                  f'expected "{name[1:-1]}"', "22P04")

    def _copy_out(self, statement: copy.Copy, params) -> str:
        """CopyOutResponse, one CopyData per row (DuckDB formats whole batches), CopyDone."""
        timezone = self.session.sql("SELECT current_setting('TimeZone')").fetchone()[0]
        if statement.table is not None:
            copy.target_description(self.session, statement)  # PostgreSQL's errors for a missing table or column
        result = self.session.execute(statement.select_sql(), params)
        if not result.has_rows:
            raise ClientError("COPY query must return rows", "0A000")
        try:
            formatter = copy_out.Formatter(statement.options, result.description)
        except copy.CopyError:
            result.close()
            raise
        self.send(protocol.copy_response(b"H", len(formatter.names)))
        if statement.options.header:
            self.send(formatter.header())
        count = 0
        for rows, data in formatter.messages(result.arrow_reader(_COPY_BATCH), timezone):
            self.send(data)
            count += rows
        self.send(protocol.COPY_DONE)
        return f"COPY {count}"

    def _notice(self, severity: str, sqlstate: str, message: str) -> None:
        self.send(protocol.error_fields(b"N", {"S": severity, "V": severity, "C": sqlstate, "M": message}))

    def _send_rows(self, portal: Portal, max_rows: int, describe_first: bool) -> None:
        fields = portal.fields() if describe_first else None
        if fields:
            self.send(protocol.row_description(fields))
        for row in portal.rows(max_rows):
            self.send(row)
        if portal.suspended:
            self.send(protocol.PORTAL_SUSPENDED)
        else:
            self.send(protocol.command_complete(command_tag(portal)))


def _statements(sql: str) -> list[tuple[str, int]]:
    """The statements of a simple Query message and where each starts in it (the whole
    text unless it holds ``;`` or comments)."""
    if ";" not in sql and "--" not in sql and "/*" not in sql:
        return [(sql, 0)] if sql.strip() else []
    statements = split_statements(sql)
    return [(sql, 0)] if statements is None else [(statement.text, statement.offset) for statement in statements]


@contextlib.contextmanager
def _positioned_from(offset: int):
    """An error's position counts from the start of the Query message, as psql expects
    (mldb's errors count from the start of their statement)."""
    try:
        yield
    except errors.Error as error:
        if offset and error.position:
            error.position += offset
        raise


def _copy_of(prepared: Prepared) -> copy.Copy | None:
    """The COPY FROM STDIN / TO STDOUT a statement is, if it is one (a COPY of a file is DuckDB's)."""
    if prepared.first_word != "COPY":
        return None
    return copy.parse(prepared.sql)


def _decode(values: list[bytes | None], formats: list[int], oids: list[int]) -> list | None:
    if not values:
        return None
    if len(formats) not in (0, 1, len(values)):
        raise ClientError(f"bind message has {len(formats)} parameter formats but {len(values)} parameters", "08P01")
    formats = formats * len(values) if len(formats) == 1 else (formats or [0] * len(values))
    decoded = []
    for number, (value, fmt) in enumerate(zip(values, formats), 1):
        try:
            decoded.append(None if value is None else param_decoder(oids[number - 1], fmt)(value))
        except (ValueError, ArithmeticError, UnicodeDecodeError, IndexError) as error:
            raise ClientError(f"invalid value for parameter ${number}: {error}", "22P02") from None
    return decoded


def _error_fields(error: Exception) -> dict[str, str]:
    if isinstance(error, errors.Error):
        sqlstate, position = error.sqlstate, error.position
    elif isinstance(error, (ClientError, copy.CopyError)):
        sqlstate, position = error.sqlstate, None
    else:
        log.error("internal error:\n%s", traceback.format_exc())
        sqlstate, position = "XX000", None
    text = error.summary if position else str(error)  # psql draws the LINE excerpt from the position itself
    message, _, detail = text.strip().partition("\n")
    fields = {"S": "ERROR", "V": "ERROR", "C": sqlstate, "M": message or type(error).__name__}
    if detail.strip():
        fields["D"] = detail.strip()
    if position:
        fields["P"] = str(position)
    return fields
