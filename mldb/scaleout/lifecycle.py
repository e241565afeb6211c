"""A running scale-out job seen from the driver: its reports, its progress, its cancel and its end.

``executor._stream`` used to iterate ``Dataset.iter_batches`` in the session's own thread. That
thread then sits inside Ray for as long as a piece computes, so neither a cancel
(``Session.interrupt``, SQLSTATE 57014) nor a result closed early could stop the job until the next
batch arrived. Here one *consumer thread* owns the Ray iterator (a generator cannot be closed from
another thread while it runs) and hands the data to the reader through a bounded queue (back
pressure: the pipeline waits while the client does not read). The reader waits on the queue 0.1 s at
a time and calls ``execution.check()`` in between, as mldb's local operators do between batches.

The consumer thread also handles each piece's meta report as it arrives:

- its prediction tallies go into the driver's ``Execution`` (``tracking.merge_reports``), so the
  statement's usual flush writes one ``mldb.prediction_log`` row per (model, version) with the job's
  totals and the user's statement text; a retried piece's report arrives once (Ray returns a task's
  blocks only when it succeeded) and a piece reported twice is not merged twice;
- the progress bar (``mldb.progress.bar``: tqdm on a terminal or in a notebook, nothing elsewhere)
  counts pieces and rows; Ray Data's own bars stay off (``executor._dataset``).

``JobRun.close`` stops the job: it shuts Ray Data's streaming executor down with ``force=True``,
which kills the pool's actors (a piece in flight dies with its process and the cluster's CPUs come
back) and ends the consumer's blocked read. It runs when the statement finishes in any way (it is
registered with ``execution.on_finish(..., always=True)``, before the log's flush, so the flush sees
every merged report), when the stream is closed (LIMIT reached, cursor closed) and when it fails.

Ray Data has no public handle on the executor of an ``iter_batches`` call; the run captures it by
wrapping the dataset's ``_create_executor`` (Ray is pinned below 2.64 in pyproject for this reason too).
"""

from __future__ import annotations

import json
import queue
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc

from mldb.scaleout import worker

WAIT = 0.1  # seconds the reader waits for a batch before it checks for a cancel
QUEUED = 4  # data batches held for a reader that is slower than the workers
STOP_DEADLINE = 30.0  # seconds close() waits for the consumer thread to end


class _End:
    """The consumer's last queue item: the stream ended, or failed with ``error``."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


class JobRun:
    """One statement's Ray Data pipeline, read by a consumer thread; ``batches()`` gives its data."""

    def __init__(self, dataset, execution, reports: list, pieces: int, workers: int):
        self.dataset = dataset
        self.execution = execution  # the driver's statement (None: no cancel checks, no log merge)
        self.reports = reports  # every report, in arrival order (the Outcome's list)
        self.pieces = pieces
        self.workers = workers
        self.rows = 0
        self._seen: set = set()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUED)
        self._stop = threading.Event()
        self._executor = None
        self._closed = False
        self._lock = threading.Lock()
        self._bar = None
        self._thread = threading.Thread(target=self._consume, name="mldb-scaleout-job", daemon=True)

    # -- start and read --------------------------------------------------------------------------
    def start(self) -> JobRun:
        from mldb import progress

        self._capture_executor()
        _quiet_ray_data_console()
        self._bar = progress.bar(total=self.pieces, desc="scale-out", unit=" pieces")
        if self.execution is not None:
            self.execution.on_finish(lambda _: self.close(), always=True)
        self._thread.start()
        return self

    def batches(self):
        """The data tables (meta rows removed, possibly empty) as they arrive; a worker's error
        is raised here; a cancel of the statement raises 57014 within ``WAIT`` seconds."""
        try:
            while True:
                item = self._next()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            self.close()

    def _next(self):
        while True:
            if self.execution is not None:
                self.execution.check()
            try:
                return self._queue.get(timeout=WAIT)
            except queue.Empty:
                continue

    # -- the consumer thread ------------------------------------------------------------------------
    def _consume(self) -> None:
        end, iterator = _End(), None
        try:
            iterator = iter(self.dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
            for batch in iterator:
                if self._stop.is_set():
                    break
                self._put(self._split(batch))
        except BaseException as error:  # noqa: BLE001 - handed to the reader, which raises it
            end = _End(None if self._stop.is_set() else error)
        finally:
            end = _closed(iterator, end)
        self._put(end, final=True)

    def _put(self, item, final: bool = False) -> None:
        """Queue ``item`` for the reader, waiting while the queue is full (unless the run stops)."""
        while not self._stop.is_set() or final:
            try:
                self._queue.put(item, timeout=WAIT)
                return
            except queue.Full:
                if final and self._stop.is_set():
                    return  # nobody reads any more
                continue

    def _split(self, batch: pa.Table) -> pa.Table:
        """Handle the batch's meta rows; its data rows, without the meta column."""
        meta = batch.column(worker.META)
        for text in pc.drop_null(meta).to_pylist():
            if not self._stop.is_set():  # (a stopped job's statement is finishing: its log is being written)
                self._handle(json.loads(text))
        return batch.filter(pc.is_null(meta)).drop_columns([worker.META])

    def _handle(self, report: dict) -> None:
        self.reports.append(report)
        if report["piece"] in self._seen:  # (the driver checks at the end that none came twice)
            return
        self._seen.add(report["piece"])
        self.rows += report.get("rows") or 0
        if self.execution is not None and report.get("predictions"):
            from mldb.lifecycle import tracking

            tracking.merge_reports(self.execution, report["predictions"], self.summary())
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{self.rows:,} rows")  # (and drawn: reports are few)

    def summary(self) -> dict:
        """What the job adds to each of its prediction log rows' summaries."""
        return {"executor": "ray", "workers": self.workers, "pieces": self.pieces}

    # -- the end ---------------------------------------------------------------------------------------
    def _capture_executor(self) -> None:
        """Keep the streaming executor ``iter_batches`` creates, to shut it down from another thread."""
        create = getattr(self.dataset, "_create_executor", None)
        if create is None:
            return

        def capture():
            self._executor = create()
            return self._executor

        self.dataset._create_executor = capture

    def close(self) -> None:
        """Stop the job (idempotent): shut the executor down (its actors are killed), end the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        deadline = time.monotonic() + STOP_DEADLINE
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._shutdown()
            self._thread.join(WAIT)
        self._shutdown()  # (one made after the loop's last look, or a finished one: force kills its actors)
        if self._bar is not None:
            self._bar.close()

    def _shutdown(self) -> None:
        executor = self._executor
        if executor is not None:
            executor.shutdown(force=True)


def _closed(iterator, end: _End) -> _End:
    """Close Ray's generator (its executor shuts down now, not when it is collected); ``end``, or
    the error closing raised when there was none."""
    close = getattr(iterator, "close", None)
    try:
        if close is not None:
            close()
    except Exception as error:  # noqa: BLE001 - the reader must get an end in any case
        return end if end.error is not None else _End(error)
    return end


def _quiet_ray_data_console() -> None:
    """Ray Data prints INFO lines for every dataset it runs ("Starting execution of Dataset ...", its
    plan, "execution finished in ..."): on the console only warnings, mldb's bar says the rest (its
    log file under the Ray session keeps everything)."""
    import logging

    for handler in logging.getLogger("ray.data").handlers:
        if handler.get_name() == "console" and handler.level < logging.WARNING:
            handler.setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # ("progress bars disabled")


def start(dataset, execution, reports: list, pieces: int, workers: int) -> JobRun:
    """Run ``dataset`` for a statement (see ``JobRun``)."""
    return JobRun(dataset, execution, reports, pieces, workers).start()
