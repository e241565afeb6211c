"""This process's one connection to Ray, and the options every scale-out actor is started with.

``ray.init`` is process-global: one process talks to one Ray cluster until ``ray.shutdown``. So the
session setting ``mldb_executor`` names where the session *wants* to run, and ``connect`` makes the
process's connection on the first statement that goes out:

- ``'ray'``: ``RAY_ADDRESS`` if set (a running cluster: ``ray start --head`` prints it), else a
  private local cluster of this process (``address="local"``: a cluster another process left on
  this machine is never picked up by accident), sized to the cores this process may use.
- ``'ray://host:port'``: Ray Client, to a head node's client server (every block passes through it).

A session asking for another address than the one the process is connected to gets
``NotSupportedError`` 0A000 naming both (the value is valid -- 22023 would say it is not -- but
this process cannot hold a second connection). A connection made outside mldb (``ray.init`` by the
application or a test) is used as it is for ``'ray'``; a ``ray://`` address is then refused the same way.

``ray.init`` replaces the SIGTERM handler (with ``sys.exit``) when called on the main thread;
``mldb serve`` stops its server on SIGTERM/SIGINT through its own handlers, so ``connect`` puts back
any handler the process had set. Where the process had none (``SIG_DFL``), Ray's stays: it exits
through ``atexit``, which stops the private cluster (the default action would leave some of its
processes running).

The connection record is module state on purpose: it mirrors Ray's own process-global state and
holds nothing of a database or a session. ``actor_options`` gives each actor its CPUs and the restart
and retry budget (``mldb_ray_retries``; Ray Data's default, -1, would retry a crashing piece forever);
the actor itself sets ``MLDB_THREADS`` = its CPUs (``worker.PieceWorker``), so torch and FAISS inside
(``mldb.threads``) do not run one thread per core of the node in every actor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass

from mldb import errors

LOCAL = "local"  # the private cluster of this process (what 'ray' means without RAY_ADDRESS)
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class _Connection:
    """What mldb asked Ray for, and the Ray session that answered (to notice a ``ray.shutdown``)."""

    address: str | None = None  # LOCAL, a RAY_ADDRESS value or 'ray://host:port'; None: not by mldb
    session: str | None = None  # the Ray session it made (ray.shutdown + a new ray.init make another)


_LOCK = threading.Lock()
_CONNECTION = _Connection()


def _keep_failure_signal_handler_out() -> None:
    """Keep Ray's C++ failure signal handler out of this process: installed by ``ray.init`` (from any
    thread), it turns SIGTERM into an abort, so ``mldb serve`` would die on SIGTERM with a core dump
    instead of stopping cleanly. Ray reads the switch from the environment when imported, and from
    its constants module when it connects (set both: ray may be imported already)."""
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    from ray._private import ray_constants

    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"].lower() in ("1", "true")


def wanted_address(executor: str) -> str:
    """The address a session's ``mldb_executor`` value names (``'local'`` means Ray here too: a job
    started directly through ``executor.execute`` runs on Ray whatever the session's setting)."""
    if executor.startswith("ray://"):
        return executor
    return os.environ.get("RAY_ADDRESS") or LOCAL


def connect(executor: str = "ray") -> str:
    """Connect this process to the Ray cluster ``executor`` names (once); the address in use."""
    _keep_failure_signal_handler_out()
    import ray

    wanted = wanted_address(executor)
    with _LOCK:
        if ray.is_initialized():
            current = _current_address()
            if current is None:  # connected outside mldb: use it for 'ray', never for a ray:// address
                if wanted.startswith("ray://"):
                    _refuse(wanted, f"{_session_name()} (ray.init outside mldb)")
                return _session_name()
            if current != wanted:
                _refuse(wanted, current)
            return current
        if wanted.startswith("ray://"):
            _check_client_package(wanted)
        with kept_signal_handlers():
            try:
                ray.init(**init_options(wanted))
            except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RuntimeError...
                raise errors.OperationalError(f"cannot connect to Ray at {_shown(wanted)}: {error}",
                                              sqlstate="08001") from None
        _CONNECTION.address, _CONNECTION.session = wanted, _session_name()
        return wanted


def _check_client_package(address: str) -> None:
    """Ray Client needs grpcio (the ``ray[client]`` extra), which ``mldb[ray]`` does not bring."""
    import importlib.util

    if importlib.util.find_spec("grpc") is None:
        raise errors.NotSupportedError(f"mldb_executor = '{address}' needs Ray Client: pip install 'ray[client]'",
                                       sqlstate="0A000")


def _current_address() -> str | None:
    """The address mldb connected with, if the Ray session it made is still the one in use."""
    if _CONNECTION.session is not None and _CONNECTION.session == _session_name():
        return _CONNECTION.address
    return None


def _session_name() -> str:
    """The Ray session this process is connected to (a new one after every ray.shutdown + ray.init)."""
    import ray

    return ray.get_runtime_context().gcs_address


def _refuse(wanted: str, current: str) -> None:
    raise errors.NotSupportedError(
        f"this process is connected to Ray at {_shown(current)}; mldb_executor asks for {_shown(wanted)}: "
        "one process holds one Ray connection (use one address per process, or restart it)", sqlstate="0A000")


def _shown(address: str) -> str:
    return "its own local cluster" if address == LOCAL else f"'{address}'"


def init_options(address: str) -> dict:
    """``ray.init``'s arguments for ``address``: a private cluster is sized and kept quiet here."""
    from mldb import threads

    quiet = {"log_to_driver": False, "configure_logging": False}
    if address == LOCAL:
        return {"address": LOCAL, "num_cpus": threads.cores(), "include_dashboard": False, **quiet}
    return {"address": address, **quiet}


@contextlib.contextmanager
def kept_signal_handlers():
    """Put back the SIGTERM/SIGINT handlers the process set itself once the block (``ray.init``) is done."""
    before = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():  # only there can Ray have changed them
            for signum, handler in before.items():
                if handler not in (signal.SIG_DFL, None) and signal.getsignal(signum) is not handler:
                    signal.signal(signum, handler)


def actor_options(cpus_per_worker: int, retries: int) -> dict:
    """The Ray options of every actor of a job's pool (passed as ``map_batches``' ray_remote_args)."""
    return {"num_cpus": cpus_per_worker, "max_restarts": retries, "max_task_retries": retries}


def describe() -> str:
    """Where this process's scale-out jobs run (for EXPLAIN once connected), e.g. ``ray at
    'ray://head:10001', 64 CPUs on 8 nodes``."""
    import ray

    if not ray.is_initialized():
        return "ray, not connected yet"
    current = _current_address()
    where = ("local cluster of this process" if current == LOCAL
             else f"at {_shown(current)}" if current else f"at {_session_name()} (ray.init outside mldb)")
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return f"ray ({where}, {cpus} CPU{'s' * (cpus != 1)} on {len(nodes)} node{'s' * (len(nodes) != 1)})"
