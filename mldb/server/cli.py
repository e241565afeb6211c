"""``mldb serve DB [--host 127.0.0.1] [--port 5433] [--password ... | --password-file ...]
[--tls-cert FILE --tls-key FILE [--tls-required]]``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys

from mldb import errors
from mldb.server.auth import METHODS, Secret


def serve_main(argv: list[str]) -> int:
    options = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        secret = _secret(options)
    except OSError as error:
        print(f"mldb serve: cannot read the password file: {error.strerror}", file=sys.stderr)
        return 2
    if secret is None and not _is_loopback(options.host) and not options.insecure:
        print(f"mldb serve: refusing to listen on {options.host} without a password; "
              "give --password/--password-file, or --insecure to allow anyone who can reach it", file=sys.stderr)
        return 2
    try:
        tls = _tls(options)
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
                        max_connections=options.max_connections, grace=options.grace, tls=tls,
                        tls_required=options.tls_required)
    except OSError as error:
        database.close()
        print(f"mldb serve: cannot listen on {options.host}:{options.port}: {error.strerror}", file=sys.stderr)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # SQL reading /dev/stdin must not wait on our terminal
    if secret is None and not _is_loopback(options.host):
        print("mldb serve: warning: --insecure: anyone who can reach this address can read and change the database",
              file=sys.stderr)
    host, port = server.address[:2]
    auth = f"password ({options.auth_method})" if secret else "no password (trust)"
    encryption = ("TLS required" if options.tls_required else "TLS available") if tls else "no TLS"
    print(f"mldb serve: {options.database} on {host}:{port}, {auth}, {encryption}", file=sys.stderr, flush=True)
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
    parser.add_argument("--max-connections", type=int, default=100, help="most clients at once (default 100)")
    parser.add_argument("--grace", type=float, default=0.0, metavar="SECONDS",
                        help="on SIGTERM/SIGINT, how long running statements may finish before they are "
                             "interrupted and rolled back (default 0: at once; a second signal ends the wait)")
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain): clients may ask for TLS "
                                                            "(sslmode=require); needs --tls-key")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument("--tls-required", action="store_true",
                        help="refuse clients that do not use TLS (default: TLS is the client's choice)")
    return parser


def _tls(options):
    """The server's SSLContext, or None without --tls-cert/--tls-key (ValueError: a clear reason)."""
    if not options.tls_cert and not options.tls_key:
        if options.tls_required:
            raise ValueError("--tls-required needs --tls-cert and --tls-key")
        return None
    if not options.tls_cert or not options.tls_key:
        raise ValueError("--tls-cert and --tls-key go together: give both")
    from mldb.server.tls import TLSSetupError, server_context

    try:
        return server_context(options.tls_cert, options.tls_key)
    except TLSSetupError as error:
        raise ValueError(f"TLS: {error}") from None


def _secret(options) -> Secret | None:
    if options.password_file:
        with open(options.password_file, encoding="utf-8") as handle:
            return Secret(handle.readline().rstrip("\r\n"))
    if options.password is not None:
        return Secret(options.password)
    password = os.environ.get("MLDB_PASSWORD")
    return Secret(password) if password else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
