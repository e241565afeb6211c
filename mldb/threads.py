"""How many threads torch and FAISS use for one operation (TRAIN's loop, EMBED's forward, an index build).

Why not torch's default (one intra-op thread per core): torch's CPU kernels run in OpenMP
parallel regions whose threads spin and then wait for each other at the end of every op. A
step of a small model (a 45 -> 2 linear layer on 256 rows) is a few microseconds of arithmetic,
so two threads spend it synchronising: 313 Adam steps took 0.08 s on one thread, 1.6 s on two,
and 13 s on two when another process held a core (a descheduled worker stalls every barrier).
Measured here (2 cores, other processes running): one thread wins for every Adam step below
about 16k rows x 7k parameters, and for EMBED's MiniLM forward whenever a core is busy; two
threads win (0.7x) only on batches of 16k rows. So:

- ``for_work(work)``: one thread per ``WORK_PER_THREAD`` (rows x parameters of one step),
  never more than the cores no other process is running on (``free_cores``).
- ``torch_threads(n)``: a context manager that sets torch's intra-op threads for its block and
  restores the previous setting. With torch's OpenMP backend that setting belongs to the calling
  thread once it has used torch (see the function), so two sessions training at once on two
  threads do not change each other's; the second measures the first's threads as busy cores.
- ``faiss_threads(n)``: the same for FAISS's OpenMP threads (``omp_set_num_threads`` holds for
  the calling thread only), with ``for_long_regions()`` for an index build: all the cores, as
  raw FAISS uses, since its regions are thousands of inserts long.
- ``fixed(n)``: pin the count for everything inside (tests and benchmarks compare settings);
  ``MLDB_THREADS`` in the environment caps every choice (as ``OMP_NUM_THREADS`` would).
"""

from __future__ import annotations

import contextlib
import os

WORK_PER_THREAD = 5e7  # rows x parameters of one step that make a second thread worth its barriers

_fixed: int | None = None


def cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or ``taskset`` sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores() -> int:
    """Threads of other processes running right now: the kernel's count of runnable threads
    (``/proc/loadavg``'s 4th field) less the one reading it; the least of three reads, so a
    short-lived process does not count. The 1-minute load average is the fallback (it lags, and
    counts this process's own recent work too)."""
    try:
        counts = []
        for _ in range(3):
            with open("/proc/loadavg") as file:
                counts.append(int(file.read().split()[3].split("/")[0]) - 1)
        return max(0, min(counts))
    except (OSError, ValueError, IndexError):
        try:
            return int(os.getloadavg()[0])
        except (AttributeError, OSError):
            return 0


def free_cores() -> int:
    """The cores no other process is running on (at least one), capped by ``MLDB_THREADS``."""
    free = max(1, cores() - busy_cores())
    return min(free, _cap()) if _cap() else free


def _cap() -> int | None:
    value = os.environ.get("MLDB_THREADS", "")
    return max(1, int(value)) if value.isdigit() else None


def for_work(work: float) -> int:
    """Threads for one step of ``work`` (rows x parameters): one per ``WORK_PER_THREAD``, at
    most the free cores (or what ``fixed`` pinned)."""
    if _fixed is not None:
        return _fixed
    wanted = max(1, int(work // WORK_PER_THREAD))
    return 1 if wanted == 1 else min(wanted, free_cores())


def for_long_regions() -> int:
    """Threads for work whose parallel regions are long (FAISS adding thousands of vectors between
    two barriers): every core this process may use. A core busy with another process slows such a
    region in proportion, not 10-20x as a barrier every few microseconds does, and fewer threads
    than cores only gives up this operation's share of a shared machine."""
    if _fixed is not None:
        return _fixed
    return min(cores(), _cap()) if _cap() else cores()


@contextlib.contextmanager
def fixed(count: int):
    """Every operation inside uses ``count`` threads (process-wide; for tests and benchmarks)."""
    global _fixed
    before, _fixed = _fixed, int(count)
    try:
        yield
    finally:
        _fixed = before


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op threads for the block on the calling thread, then its setting before.

    With torch's OpenMP backend the setting is the calling thread's own once it has used torch
    (``set_num_threads`` stores the OpenMP count of that thread, and a thread's first torch call
    copies the last value set anywhere), so a block never changes what another session's thread
    runs with. Concurrent blocks share the cores through ``free_cores``: the threads of one
    running already count as busy when the next one measures."""
    import torch

    share = _fixed if _fixed is not None else 1 if count <= 1 else min(int(count), free_cores())
    before = torch.get_num_threads()
    if share != before:
        torch.set_num_threads(share)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def faiss_threads(count: int):
    """FAISS's OpenMP threads for the block, on the calling thread (OpenMP keeps it per thread)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(count))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
