"""``mldb ui DB [--host 127.0.0.1] [--port 8765] [--password-file F] [--insecure]``: the console on a database
opened read-only; and ``start_beside`` for ``mldb serve DB --ui-port P`` (same database, one process)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading

from mldb import errors


def ui_main(argv: list[str]) -> int:
    options = _parser().parse_args(argv)
    try:
        import uvicorn  # noqa: F401 - the console's extra
        from mldb.console import create_app
    except ModuleNotFoundError as error:
        print(f"mldb ui: the console needs {error.name}: pip install 'mldb[ui]'", file=sys.stderr)
        return 2
    from mldb.server.cli import checked_password, password_from

    secret, problem = checked_password("mldb ui", lambda: password_from(options.password_file), options.host,
                                       options.insecure, "--password-file")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from mldb.database import open_database

    try:
        database = open_database(options.database, read_only=True)
    except errors.Error as error:
        held = "lock" in str(error).lower()  # (another process writes it: DuckDB's "Could not set lock")
        hint = "\n(if mldb serve has it open, start the console with it: mldb serve DB --ui-port PORT)" if held else ""
        print(f"mldb ui: cannot open {options.database} read-only: {error}{hint}", file=sys.stderr)
        return 1
    try:
        server, listener = _server(create_app(database, secret, options.host), options.host, options.port)
    except OSError as error:
        database.close()
        print(f"mldb ui: cannot listen on {options.host}:{options.port}: {error.strerror}", file=sys.stderr)
        return 1
    auth = "password (HTTP basic auth)" if secret else "no password"
    print(f"mldb ui: {options.database} (read-only) at http://{options.host}:{server.port}/, {auth}",
          file=sys.stderr, flush=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        # uvicorn handles both while it runs, then raises them again with the handlers it found: a
        # no-op here lets run() return, so the database closes and the exit status is 0
        signal.signal(signum, lambda *_: None)
    try:
        server.run(sockets=[listener])
    finally:
        database.close()
    return 0


def start_beside(database, host: str, port: int, secret=None):
    """Serve the console on a thread over an open ``database`` (``mldb serve --ui-port``); returns the
    uvicorn server (``.port``; ``.should_exit = True`` then ``.thread.join()`` stops it) once it listens."""
    from mldb.console import create_app

    server, listener = _server(create_app(database, secret, host), host, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="mldb-console", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    if not thread.is_alive():
        raise OSError(f"the console could not start on {host}:{port}")
    server.thread = thread
    return server


def _server(app, host: str, port: int):
    """A uvicorn server for ``app`` and the socket it will serve (bound here: a busy port is an OSError
    for the caller to word, not uvicorn's exit); ``server.port`` is the port bound (0 picks one)."""
    import uvicorn

    listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            server_header=False, lifespan="off")
    server = uvicorn.Server(config)
    server.port = listener.getsockname()[1]
    return server, listener


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mldb ui", description="A read-only web console over a database.")
    parser.add_argument("database", help="the database file (opened read-only)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--password-file", help="require the password stored in this file (first line), "
                                                "as mldb serve's; MLDB_PASSWORD is read otherwise")
    parser.add_argument("--insecure", action="store_true", help="allow a non-local address without a password")
    return parser
