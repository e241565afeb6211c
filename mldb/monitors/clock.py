"""The one clock monitors read: when a monitor was created, ran, and is next due.

Naive local time, as ``current_localtimestamp()`` writes the rest of the catalog. Schedules never read
the time anywhere else: ``runner.run_due(session, now=...)`` and ``mldb monitor DB --now ...`` pass an
explicit time instead, so tests and replays move through simulated days without sleeping.
"""

from __future__ import annotations

from datetime import datetime


def now() -> datetime:
    """The current local time, naive (no time zone), as the catalog's timestamps."""
    return datetime.now()
