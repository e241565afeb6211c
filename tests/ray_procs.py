"""The processes of a Ray cluster a test started, read from /proc (Linux), to kill one or check none is left.

A private cluster (``ray.init(address="local")``) is this process's descendant: gcs_server and the
raylet are its children, and every worker (an actor shows as ``ray::<class>.<method>`` while it
runs a task) a child of the raylet. ``ray start --block`` run with ``start_new_session=True`` keeps
its whole cluster in that session.
"""

from __future__ import annotations

import os
import time


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid``, None when it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            text = file.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[3])


def title(pid: int) -> str:
    """The process's command line as it shows it (Ray workers set theirs to ``ray::...``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _all() -> dict[int, tuple[int, int]]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            found[int(name)] = stat
    return found


def descendants(root: int) -> list[int]:
    table = _all()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def in_session(session: int) -> list[int]:
    """Live processes of the session ``session`` (a ``start_new_session`` child's pid)."""
    return [pid for pid, (_, sid) in _all().items() if sid == session and _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as file:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in file)
    except OSError:
        return False


def wait_for(condition, what: str, deadline_s: float = 300.0, every_s: float = 0.05):
    """Poll ``condition()`` until it returns something truthy (returned); AssertionError naming ``what``."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if found := condition():
            return found
        time.sleep(every_s)
    raise AssertionError(f"gave up waiting for {what}")
