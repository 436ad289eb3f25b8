"""A byte-bounded LRU of rendered list pages, shared by both vendor APIs of one simulator.

Owns only the memory bound and the hit/miss counters. Callers decide what a key is: it must
name everything the cached text depends on (vendor, endpoint, window, offset, size and the
fault state that changes records, such as withheld recordings). Envelope fields that faults
change per request (totals) are not cached. Nothing here knows HTTP or record contents.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class PageCache:
    """Thread-safe LRU of `(record count, JSON text of the records)` values.

    `max_bytes=0` disables caching. A value larger than the whole bound is not stored.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()

    def get(self, key: Hashable) -> tuple[int, bytes] | None:
        if not self.max_bytes:
            return None
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, count: int, text: bytes) -> None:
        n = len(text)
        if not self.max_bytes or n > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= len(old[1])
            self._items[key] = (count, text)
            self.size += n
            while self.size > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0

    def __len__(self) -> int:
        return len(self._items)
