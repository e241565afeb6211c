"""``mldb serve DB [--host 127.0.0.1] [--port 5433] [--password ... | --password-file ...]
[--tls-cert FILE --tls-key FILE [--require-tls]] [connection limits] [--data-dir DIR] [--export-dir DIR]
[--allow-admin] [--monitor-interval SECONDS] [--ui-port P [--ui-host H]]``.

``--ui-port`` serves the web console (``mldb.console``) beside the wire server, on the same open
database (a second process could only open the file read-only, and not while this one writes it),
behind the same password; it stops with the server, before the database closes."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys

from mldb import errors
from mldb.server.access import ClientAccess
from mldb.server.auth import METHODS, Secret
from mldb.server.limits import Limits


def serve_main(argv: list[str]) -> int:
    options = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    secret, problem = checked_password("mldb serve", lambda: _secret(options), options.host, options.insecure,
                                       "--password/--password-file")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        tls = _tls(options)
        limits = _limits(options)
        access = _access(options)
        _check_console(options, secret)
    except ValueError as error:
        print(f"mldb serve: {error}", file=sys.stderr)
        return 2
    from mldb.server.app import Server
    from mldb.database import open_database

    try:
        database = open_database(options.database)
    except errors.Error as error:
        print(f"mldb serve: cannot open {options.database}: {error}", file=sys.stderr)
        return 1
    try:
        server = Server(database, options.host, options.port, secret=secret, auth_method=options.auth_method,
                        limits=limits, grace=options.grace, tls=tls,
                        tls_required=options.tls_required, access=access,
                        monitor_interval=options.monitor_interval)
    except OSError as error:
        database.close()
        print(f"mldb serve: cannot listen on {options.host}:{options.port}: {error.strerror}", file=sys.stderr)
        return 1
    if options.ui_port is not None:
        try:
            server.console = _start_console(database, options, secret)
        except OSError as error:
            server.listener.close()
            database.close()
            print(f"mldb serve: {error}", file=sys.stderr)
            return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # SQL reading /dev/stdin must not wait on our terminal
    if secret is None and not is_loopback(options.host):
        print("mldb serve: warning: --insecure: anyone who can reach this address can read and change the database",
              file=sys.stderr)
    if (warning := _clear_text_warning(options, secret, tls)) is not None:
        print(warning, file=sys.stderr)
    host, port = server.address[:2]
    auth = f"password ({options.auth_method})" if secret else "no password (trust)"
    encryption = ("TLS required" if options.tls_required else "TLS available") if tls else "no TLS"
    console = ""
    if server.console is not None:
        console = f"; console at {_console_url(options.ui_host or options.host, server.console.port)}"
    print(f"mldb serve: {options.database} on {host}:{port}, {auth}, {encryption}; {access.describe()}{console}",
          file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mldb serve", description="Serve a database over the PostgreSQL protocol.")
    parser.add_argument("database", help="the database file to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5433, help="port (default 5433; 0 picks a free one)")
    password = parser.add_mutually_exclusive_group()
    password.add_argument("--password", help="require this password (prefer --password-file: argv is visible)")
    password.add_argument("--password-file", help="require the password stored in this file (first line)")
    parser.add_argument("--auth-method", choices=METHODS, default="scram-sha-256",
                        help="how clients prove the password (default scram-sha-256; md5/password for old clients)")
    parser.add_argument("--insecure", action="store_true", help="allow a non-local address without a password")
    parser.add_argument("--grace", type=float, default=0.0, metavar="SECONDS",
                        help="on SIGTERM/SIGINT, how long running statements may finish before they are "
                             "interrupted and rolled back (default 0: at once; a second signal ends the wait)")
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain): clients may ask for TLS "
                                                            "(sslmode=require); needs --tls-key")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument("--require-tls", "--tls-required", dest="tls_required", action="store_true",
                        help="refuse clients that do not use TLS (default: TLS is the client's choice)")
    parser.add_argument("--monitor-interval", type=_interval, default=60.0, metavar="SECONDS",
                        help="run the due monitors (CREATE MONITOR) every SECONDS on a thread of the server's "
                             "own, with a client's rights (default 60; 0: never, e.g. when a cron job runs "
                             "mldb monitor)")
    console = parser.add_argument_group(
        "web console", "The read-only web console (models, lineage, tables, predictions; see mldb ui) on the "
        "served database, behind the same password (HTTP basic auth, no TLS); it needs the ui extra "
        "(pip install 'mldb[ui]').")
    console.add_argument("--ui-port", type=int, metavar="PORT", help="serve the console on PORT (0 picks a free one)")
    console.add_argument("--ui-host", metavar="HOST", help="address the console listens on (default: --host)")
    _limit_options(parser.add_argument_group(
        "connection limits", "Every connection holds a slot from the moment it is accepted. A start-up "
        "packet over 10,000 bytes or a password message over 65,535 bytes is refused before it is read "
        "(08P01). A connection refused for want of a slot gets 53300."))
    access = parser.add_argument_group(
        "what clients may do", "By default a client changes only its own session's settings, and only those "
        "that shape its own results (TimeZone, default_order, search_path, ...: SET runs as SET SESSION); it may "
        "not administer the server (SET GLOBAL, server-wide settings, ATTACH/DETACH, INSTALL/LOAD, IMPORT "
        "DATABASE, secrets, logging, query(), LOAD UDFS: SQLSTATE 42501), may not write mldb's catalog "
        "(schema mldb: only mldb's statements, CREATE MODEL / TRAIN / DEPLOY / CREATE MONITOR ..., change it) "
        "and reads or writes no file of the server's, embedding models by path included.")
    access.add_argument("--data-dir", metavar="DIR",
                        help="clients may read files in DIR (read_csv, read_parquet, COPY FROM, ...)")
    access.add_argument("--export-dir", metavar="DIR",
                        help="clients may write files in DIR (COPY ... TO, EXPORT DATABASE) and read them back")
    access.add_argument("--allow-file-access", action="store_true",
                        help="clients may read and write any file the server's user can (trusted clients only)")
    access.add_argument("--allow-admin", action="store_true",
                        help="clients may change server-wide settings, ATTACH, INSTALL/LOAD extensions, "
                             "manage secrets, write mldb's catalog (schema mldb) with SQL and LOAD UDFS (runs "
                             "Python on the server: trusted clients only)")
    return parser


def _check_console(options, secret) -> None:
    """ValueError when the console options cannot work: no ui extra, a bad port, or a non-local
    address without a password (as for the wire server)."""
    if options.ui_port is None:
        if options.ui_host is not None:
            raise ValueError("--ui-host needs --ui-port")
        return
    if not 0 <= options.ui_port <= 65535:
        raise ValueError(f"--ui-port must be from 0 to 65535, got {options.ui_port}")
    host = options.ui_host or options.host
    if secret is None and not is_loopback(host) and not options.insecure:
        raise ValueError(f"refusing to serve the console on {host} without a password; give --password/"
                         "--password-file, or --insecure to allow anyone who can reach it")
    for module in ("starlette", "uvicorn", "jinja2"):
        try:
            __import__(module)
        except ModuleNotFoundError:
            raise ValueError(f"--ui-port: the console needs {module}: pip install 'mldb[ui]'") from None


def _start_console(database, options, secret):
    """The console on a thread of this process (``mldb.console.cli.start_beside``); OSError: why not."""
    from mldb.console.cli import start_beside

    host = options.ui_host or options.host
    try:
        return start_beside(database, host, options.ui_port, secret)
    except OSError as error:
        raise OSError(f"the console could not listen on {host}:{options.ui_port}: {error.strerror or error}") from None


def _console_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _limit_options(group) -> None:
    default = Limits()
    group.add_argument("--max-connections", type=int, default=default.max_connections, metavar="N",
                       help=f"most connections at once, authenticated or not (default {default.max_connections})")
    group.add_argument("--reserved-connections", type=int, metavar="N",
                       help=f"the last N slots are for authenticated clients: when connections still "
                            f"authenticating hold all the others, a new one replaces the oldest of them "
                            f"(default {default.reserved_connections}, fewer if --max-connections is smaller)")
    group.add_argument("--max-connections-per-user", type=int, default=0, metavar="N",
                       help="most authenticated connections per user name (default 0: no limit)")
    group.add_argument("--max-auth-per-address", type=int, default=default.max_authenticating_per_address,
                       metavar="N", help=f"most connections from one address that are authenticating at once; "
                                         f"more are refused (default {default.max_authenticating_per_address})")
    group.add_argument("--auth-timeout", type=float, default=default.auth_timeout, metavar="SECONDS",
                       help=f"time a connection has for TLS, start-up and authentication before it is closed "
                            f"(default {default.auth_timeout:g})")
    group.add_argument("--auth-delay", type=float, default=default.auth_delay, metavar="SECONDS",
                       help=f"wait before answering a wrong password, to slow guessing "
                            f"(default {default.auth_delay:g})")


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    from mldb.monitors.background import LONGEST_INTERVAL

    if not 0 <= value <= LONGEST_INTERVAL:
        raise argparse.ArgumentTypeError(f"a number of seconds (0: no monitors), at most {LONGEST_INTERVAL:.0f} "
                                         f"(a day), got {text!r}")
    return value


def _limits(options) -> Limits:
    """The connection limits of the options (ValueError: which one is out of range)."""
    reserved = options.reserved_connections
    if reserved is None:
        reserved = min(Limits().reserved_connections, max(options.max_connections - 1, 0))
    return Limits(max_connections=options.max_connections, reserved_connections=reserved,
                  max_connections_per_user=options.max_connections_per_user,
                  max_authenticating_per_address=options.max_auth_per_address,
                  auth_timeout=options.auth_timeout, auth_delay=options.auth_delay)


def _clear_text_warning(options, secret, tls) -> str | None:
    """A warning when a password protects a non-local address that clients may reach without TLS."""
    if secret is None or is_loopback(options.host) or options.tls_required:
        return None
    exposed = {"password": "the password itself travels in clear text",
               "md5": "md5 sends a hash of the password that an eavesdropper can attack offline (md5 is weak)",
               "scram-sha-256": "scram-sha-256 does not reveal the password, but queries and results travel "
                                "unencrypted (with --auth-method password or md5 the password would be "
                                "exposed)"}[options.auth_method]
    who = "for clients that do not ask for TLS" if tls else f"on {options.host} without TLS"
    return f"mldb serve: warning: {who}, {exposed}; give --tls-cert/--tls-key and --require-tls"


def _access(options) -> ClientAccess:
    for flag, directory in (("--data-dir", options.data_dir), ("--export-dir", options.export_dir)):
        if directory and not os.path.isdir(directory):
            raise ValueError(f"{flag} {directory}: no such directory")
    return ClientAccess(allow_admin=options.allow_admin, allow_file_access=options.allow_file_access,
                        data_dir=options.data_dir, export_dir=options.export_dir)


def _tls(options):
    """The server's SSLContext, or None without --tls-cert/--tls-key (ValueError: a clear reason)."""
    if not options.tls_cert and not options.tls_key:
        if options.tls_required:
            raise ValueError("--require-tls needs --tls-cert and --tls-key")
        return None
    if not options.tls_cert or not options.tls_key:
        raise ValueError("--tls-cert and --tls-key go together: give both")
    from mldb.server.tls import TLSSetupError, server_context

    try:
        return server_context(options.tls_cert, options.tls_key)
    except TLSSetupError as error:
        raise ValueError(f"TLS: {error}") from None


def _secret(options) -> Secret | None:
    if options.password is not None:
        return Secret(options.password)
    return password_from(options.password_file)


def checked_password(program: str, read, host: str, insecure: bool, how: str) -> tuple[Secret | None, str | None]:
    """The password ``read()`` finds (or None), or the sentence why ``program`` must not start: the file
    cannot be read, or there is none while ``host`` is not this machine only and ``--insecure`` was not given."""
    try:
        secret = read()
    except OSError as error:
        return None, f"{program}: cannot read the password file: {error.strerror}"
    if secret is None and not is_loopback(host) and not insecure:
        return None, (f"{program}: refusing to listen on {host} without a password; give {how} (or MLDB_PASSWORD), "
                      "or --insecure to allow anyone who can reach it")
    return secret, None


def password_from(password_file: str | None) -> Secret | None:
    """The password in ``password_file`` (its first line), else ``MLDB_PASSWORD``, else none (also ``mldb ui``'s)."""
    if password_file:
        with open(password_file, encoding="utf-8") as handle:
            return Secret(handle.readline().rstrip("\r\n"))
    password = os.environ.get("MLDB_PASSWORD")
    return Secret(password) if password else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ::1): no password is needed there."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
