"""Durable delivery: one worker thread per sink sends the outbox entries of the event store.

Why: an alert must survive a receiver that is down for minutes, a crash and a restart, and one slow or dead
receiver must never delay another sink or the next alert. So every delivery is a row in the event store
(``EventStore.add(event, sinks=...)``) and each sink has its own ``DeliveryWorker``: it takes the entries that
are due (woken at once by ``wake()`` when an alert is stored, else polling, so a restart or ``facewatch events
redeliver`` is picked up), sends up to ``alerts.delivery.concurrency`` at once on a thread pool, reschedules a
failed try with exponential backoff (``backoff_s`` doubling up to ``max_backoff_s``) and marks it ``failed`` only
once it has been pending longer than ``give_up_after_s``, with a log line of its own. Delivery is at least once:
a try cut short by a crash is sent again after the restart.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from stream.config import DeliveryConfig
from stream.outputs.webhook import WebhookError
from stream.records import Event
from stream.store.events import Delivery, EventStore, EventStoreError

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0  # a failing delivery is logged at most once per event per this long
STOP_GRACE_S = 2.0  # on stop, how long tries in flight may still finish (and be recorded)


class Sink(Protocol):
    """What the outbox delivers to: one try per call; raising means it did not land."""

    def send(self, e: Event) -> None: ...


def _describe(exc: BaseException) -> str:
    """The error as kept in the store and logged: sinks' own errors are already worded for that."""
    return str(exc) if isinstance(exc, WebhookError) else f"{type(exc).__name__}: {exc}"


class DeliveryWorker(threading.Thread):
    """Sends the due outbox entries of one sink; ``delivered``, ``try_failures`` and ``given_up`` count this
    process's outcomes (the store holds the totals)."""

    def __init__(self, store_path: str | Path, sink_name: str, sink: Sink, cfg: DeliveryConfig,
                 poll_s: float = 1.0) -> None:
        super().__init__(daemon=True, name=f"delivery-{sink_name}")
        self.store_path = Path(store_path)
        self.sink_name, self.sink, self.cfg, self.poll_s = sink_name, sink, cfg, poll_s
        self.concurrency = max(1, min(cfg.concurrency, getattr(sink, "max_concurrency", cfg.concurrency)))
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._results: queue.SimpleQueue[tuple[Delivery, str | None, float]] = queue.SimpleQueue()
        self._inflight: dict[int, Delivery] = {}
        self._last_logged: dict[int, float] = {}
        self.delivered = self.try_failures = self.given_up = 0

    # ------------------------------------------------------------------ control (any thread)
    def wake(self) -> None:
        """An entry was added (or reset): look at the outbox now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the worker to finish (tries in flight get ``STOP_GRACE_S`` to land); ``join`` to wait."""
        self._stopping.set()
        self._wake.set()

    # ------------------------------------------------------------------ the worker thread
    def run(self) -> None:
        store = EventStore(self.store_path)  # its own connection; the pool threads never touch the store
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"send-{self.sink_name}")
        store_error = ""
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before looking: a wake-up from now on is not lost
                try:
                    self._apply_results(store)
                    self._dispatch(store, pool)
                    wait = self._wait_s(store)
                    store_error = ""
                except EventStoreError as exc:  # e.g. locked for longer than the timeout: try again later
                    if str(exc) != store_error:
                        log.error("delivery to %s paused: %s", self.sink_name, exc)
                    store_error, wait = str(exc), self.poll_s
                self._wake.wait(wait)
            self._finish(store)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            store.close()

    def _finish(self, store: EventStore) -> None:
        """Record the tries that land within the grace; the rest stay pending and are sent after a restart."""
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            while self._inflight and time.monotonic() < deadline:
                try:
                    d, err, at = self._results.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                self._apply(store, d, err, at)
        except EventStoreError as exc:
            log.error("delivery to %s stopped without recording its last tries: %s", self.sink_name, exc)

    def _dispatch(self, store: EventStore, pool: ThreadPoolExecutor) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return
        for d in store.due(self.sink_name, limit=free, exclude=self._inflight):
            assert d.event.id is not None
            self._inflight[d.event.id] = d
            pool.submit(self._try, d)

    def _try(self, d: Delivery) -> None:
        """On a pool thread: one send; the outcome goes back to the worker thread, which records it."""
        err: str | None = None
        try:
            self.sink.send(d.event)
        except Exception as exc:  # any failure of a sink is a failed try, never a dead worker
            err = _describe(exc)
        self._results.put((d, err, time.time()))
        self._wake.set()

    def _wait_s(self, store: EventStore) -> float:
        if len(self._inflight) >= self.concurrency:
            return self.poll_s  # a finished try wakes us
        nxt = store.next_due(self.sink_name, exclude=self._inflight)
        return self.poll_s if nxt is None else min(self.poll_s, max(0.0, nxt - time.time()))

    def _apply_results(self, store: EventStore) -> None:
        while True:
            try:
                d, err, at = self._results.get_nowait()
            except queue.Empty:
                return
            self._apply(store, d, err, at)

    def _apply(self, store: EventStore, d: Delivery, err: str | None, at: float) -> None:
        event_id = d.event.id
        assert event_id is not None
        self._inflight.pop(event_id, None)
        tries = d.attempts + 1
        if err is None:
            store.mark_delivered(event_id, self.sink_name)
            self.delivered += 1
            if self._last_logged.pop(event_id, None) is not None:
                log.info("delivered event %d to %s after %d tries", event_id, self.sink_name, tries)
            return
        self.try_failures += 1
        pending_s = at - d.pending_since
        if pending_s >= self.cfg.give_up_after_s:
            store.mark_failed(event_id, self.sink_name, err)
            self.given_up += 1
            self._last_logged.pop(event_id, None)
            log.error("giving up on delivery of event %d to %s after %d tries in %.1f s: %s "
                      "(facewatch events redeliver --id %d sends it again)",
                      event_id, self.sink_name, tries, pending_s, err, event_id)
            return
        delay = min(self.cfg.backoff_s * 2 ** min(tries - 1, 60), self.cfg.max_backoff_s)
        store.reschedule(event_id, self.sink_name, at + delay, err)
        if at - self._last_logged.get(event_id, float("-inf")) >= LOG_EVERY_S:
            self._last_logged[event_id] = at
            log.warning("delivery of event %d to %s failed (try %d): %s; retrying in %.1f s "
                        "(logged at most once a minute per event)", event_id, self.sink_name, tries, err, delay)
