"""``mldb monitor DB [--once] [--now TIME] [--interval SECONDS]``: run the due monitors.

    mldb monitor shop.db --once                       run what is due now, then exit (cron, a systemd timer)
    mldb monitor shop.db                              run what is due every 60 s until SIGINT / SIGTERM
    mldb monitor shop.db --once --now '2027-01-01 12:00'    as if it were that time (tests, catching up)

One line per run on stdout (monitor, model, outcome, action, versions, message); nothing
when nothing was due, so cron mails only when something ran. The exit status is 1 when the
database cannot be opened (missing file, not a DuckDB file, locked by another process such
as ``mldb serve``) or, with ``--once``, when the due monitors could not be run at all (the
runner itself failed: nothing was recorded); 0 otherwise. A monitor whose check or action
fails is not a failure of this command: its run is recorded with outcome ``error`` and the
message, and printed (nothing else changes, not even an alert) — a failing monitor would otherwise make every
cron mail or systemd unit "failed" while the database already says what went wrong.
SIGINT / SIGTERM interrupt a run in progress (it rolls back: the database keeps its last
committed state) and exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import signal
import sys
import threading

from mldb import errors


def monitor_main(argv: list[str]) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    if options.now is not None and not options.once:
        parser.error("--now needs --once (a loop with a fixed clock would find nothing due after its first pass)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        database = _open(options.database)
    except errors.Error as error:
        print(f"mldb monitor: cannot open {options.database}: {error}", file=sys.stderr)
        return 1
    from mldb.monitors.background import Scheduler

    scheduler = Scheduler(database, options.interval, once=options.once, now=options.now, report=_print_run)
    try:
        with _stopped_by_signals() as stop:
            scheduler.start()
            while not stop.is_set() and not scheduler.wait(0.5):
                pass
            if not scheduler.stop():
                print("mldb monitor: the run in progress did not stop; exiting without closing the database",
                      file=sys.stderr)
                os._exit(1)  # (DuckDB's write-ahead log keeps every committed transaction)
    finally:
        database.release()
    return 1 if options.once and scheduler.failed is not None and not stop.is_set() else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mldb monitor", description="Run the monitors that are due "
                                     "(see CREATE MONITOR): once, or every --interval seconds.")
    parser.add_argument("database", help="the database file (it must exist)")
    parser.add_argument("--once", action="store_true", help="run the due monitors once, then exit (for cron or "
                                                            "a systemd timer)")
    parser.add_argument("--interval", type=_seconds, default=60.0, metavar="SECONDS",
                        help="with no --once: seconds between two passes (default 60)")
    parser.add_argument("--now", type=_timestamp, metavar="'YYYY-MM-DD HH:MM[:SS]'",
                        help="run as if the local time were this (needs --once)")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    from mldb.monitors.background import LONGEST_INTERVAL

    if not 0 < value <= LONGEST_INTERVAL:
        raise argparse.ArgumentTypeError(f"a positive number of seconds, at most {LONGEST_INTERVAL:.0f} (a day), "
                                         f"got {text!r}")
    return value


def _timestamp(text: str) -> datetime.datetime:
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"a local time as 'YYYY-MM-DD HH:MM[:SS]', got {text!r}") from None
    if value.tzinfo is not None:
        raise argparse.ArgumentTypeError(f"a local time without a time zone, got {text!r}")
    return value


def _open(path: str):
    """The database at ``path``; an mldb error when there is no such file or it is no DuckDB file
    (a monitor command must not create an empty database where a typo pointed it)."""
    from mldb.cli import _not_a_database
    from mldb.database import open_database

    if not os.path.isfile(path):
        raise errors.OperationalError(f"no such database file: {path}")
    problem = _not_a_database(path)
    if problem:
        raise errors.OperationalError(problem)
    return open_database(path)


@contextlib.contextmanager
def _stopped_by_signals():
    """SIGINT and SIGTERM set the event yielded (the main thread then stops the scheduler) instead
    of raising in whatever the main thread was doing; the old handlers come back after."""
    event = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: event.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _print_run(run: dict) -> None:
    from mldb.monitors.background import describe_run

    print(describe_run(run), flush=True)
