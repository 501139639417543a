"""Materialised answers: the default related block of every stored article, kept computed.

A background thread fills the answer cache at start-up (newest articles first, since readers
concentrate there) and recomputes the blocks that a write invalidated, so an article page's
request is a cache lookup plus the stored JSON. Requests that miss still compute on demand,
once per key (the cache's single-flight).
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections.abc import Iterable

import numpy as np

from recsys.answers import Answers

log = logging.getLogger(__name__)


class Materializer:
    """One daemon thread computing default blocks for queued article ids."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="recsys-materialize", daemon=True)
        self.done = 0

    def start(self) -> None:
        """Queue every live article, newest first (up to the cache's size), and start working."""
        snap = self.answers.engine.live.catalog.snapshot()
        alive = snap.col["alive"][: snap.n]
        ts = np.nan_to_num(snap.col["ts"][: snap.n], nan=-np.inf)
        rows = [r for r in np.argsort(-ts, kind="stable") if alive[r]][: self.answers.cache.max_entries]
        self._thread.start()
        self.enqueue(snap.ids[r] for r in rows)

    def enqueue(self, article_ids: Iterable[str]) -> None:
        """Queue blocks to compute; a no-op unless started (RECSYS_MATERIALIZE)."""
        if not self._thread.is_alive():
            return
        for article_id in article_ids:
            self._queue.put(article_id)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (article_id := self._queue.get()) is not None:
            try:
                self.answers.materialize(article_id)
                self.done += 1
            except Exception:  # one bad block must not stop the rest; the request path reports it
                log.exception("could not materialise the block of %r", article_id)
            if self._queue.empty():
                # 100k cached answers make a full collection cost ~300 ms, a pause every request in
                # flight waits for (the p99 tail). Long-lived answers need no cycle collection: freezing
                # takes them out of it; they are still freed by reference counting when dropped.
                gc.freeze()
