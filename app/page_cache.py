"""What many visitors of a hosted exchange are shown alike, kept a moment: the market's rendered
listings (newest first, a page of a sort, a popular search: reading the index and rendering the
table was most of such a page's time) and a model page's sale terms read from the chain.

app.market keys each entry by what decides it, starting with the index's checkpoint (its block
number and hash: a new block or a reorg is a new key at once). An entry lives at most ``ttl_s``
seconds, because the index changes without a new block too (the follower loads a listing's
metadata JSON a moment after its block): a page is then at most ``ttl_s`` behind the index, as
the index itself is up to its follower's poll interval behind the chain. At most
``max_entries`` are kept (the least recently used go first); ``max_entries`` 0 turns it off.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

DEFAULT_TTL_S = 2.0
DEFAULT_MAX_ENTRIES = 256


class PageCache:
    """Thread-safe: waitress serves the UI from several threads."""

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl_s, self.max_entries, self._clock = ttl_s, max_entries, clock
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], object]) -> object:
        """The value kept for ``key`` while it is fresh, else ``make()`` (kept for next time).
        Two threads missing the same key at once both make it: no thread waits on another."""
        if self.max_entries <= 0:
            return make()
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and now - found[0] < self.ttl_s:
                self._entries.move_to_end(key)
                self.hits += 1
                return found[1]
            self.misses += 1
        value = make()
        with self._lock:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)
