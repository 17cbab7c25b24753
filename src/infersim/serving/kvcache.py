"""Paged KV cache of one replica: fixed-size blocks, block accounting and an LRU prefix cache.

Blocks. A block holds `block_tokens` tokens of one sequence's KV cache across all attention
layers of the replica (vLLM's paged attention). `blocks_for(tokens)` is a table built from the cost
model's `kv_bytes_per_seq`, so sliding windows / chunked attention (blocks beyond the window are
freed, as vLLM's hybrid allocator does) and Mamba state (a constant per sequence) count exactly as
the memory fit counts them. Capacity is the memory the fit leaves after weights, the activations
of the largest step, the per-sequence logits buffers of a full batch and the runtime reserve.

Prefix cache. Requests may carry prefix-block hash ids (each standing for `prefix_block_tokens`
prompt tokens, Mooncake style). A finished request leaves its prompt's blocks in the cache; a later
request whose leading ids are cached skips prefilling them. Cached blocks nobody uses are free
(evictable, LRU); blocks a running request uses are pinned (reference counted). Accounting:
used (owned + pinned) + free = total at all times, and evictable <= free.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np


class KVCache:
    def __init__(self, total_blocks: int, block_tokens: int, table: np.ndarray, prefix_block_tokens: int,
                 prefix_caching: bool):
        self.total = int(total_blocks)
        self.block_tokens = int(block_tokens)
        self._table_arr = np.asarray(table, dtype=np.int64)  # blocks a sequence of j*block_tokens tokens needs
        self._table = self._table_arr.tolist()
        # the most blocks block_tokens more tokens of context can add (the table's largest step)
        self.max_block_step = int(np.max(np.diff(self._table_arr), initial=0))
        self.free = self.total
        self.prefix_caching = prefix_caching
        self.prefix_block_tokens = prefix_block_tokens
        self.blocks_per_id = max(1, math.ceil(prefix_block_tokens / block_tokens))
        self._refs: dict[int, int] = {}       # cached hash id -> running requests using it
        self._lru: OrderedDict[int, None] = OrderedDict()  # cached ids nobody uses, oldest first

    # -- blocks --------------------------------------------------------------------------------
    def blocks_for(self, tokens: int) -> int:
        return self._table[-(-tokens // self.block_tokens)]

    def blocks_for_array(self, tokens: np.ndarray) -> np.ndarray:
        return self._table_arr[-(-tokens // self.block_tokens)]

    @property
    def used(self) -> int:
        return self.total - self.free

    @property
    def evictable(self) -> int:
        return len(self._lru) * self.blocks_per_id

    def can_allocate(self, n: int) -> bool:
        return n <= self.free

    def allocate(self, n: int) -> None:
        """Take n free blocks, evicting least-recently-used cached prefixes as needed."""
        if n > self.free:
            raise RuntimeError(f"KV cache over-allocated: need {n}, free {self.free}")
        self.free -= n
        self._evict()

    def release(self, n: int) -> None:
        self.free += n

    def _evict(self) -> None:
        while len(self._lru) * self.blocks_per_id > self.free:
            hid, _ = self._lru.popitem(last=False)
            del self._refs[hid]

    # -- prefix cache --------------------------------------------------------------------------
    def match(self, ids, max_tokens: int) -> list[int]:
        """Pin the longest cached leading run of `ids` covering at most `max_tokens` tokens;
        returns the pinned ids (their blocks move from free to used)."""
        if not self.prefix_caching or not ids:
            return []
        pinned = []
        for hid in ids[: max_tokens // self.prefix_block_tokens]:
            refs = self._refs.get(hid)
            if refs is None:
                break
            if refs == 0:
                del self._lru[hid]
                self.free -= self.blocks_per_id
            self._refs[hid] = refs + 1
            pinned.append(hid)
        return pinned

    def unpin(self, ids) -> None:
        for hid in ids:
            refs = self._refs[hid] - 1
            self._refs[hid] = refs
            if refs == 0:
                self._lru[hid] = None
                self.free += self.blocks_per_id

    def insert(self, ids) -> None:
        """Keep a finished request's prompt blocks as cached prefixes (most recent last)."""
        if not self.prefix_caching:
            return
        for hid in ids:
            if hid in self._refs:
                if self._refs[hid] == 0:
                    self._lru.move_to_end(hid)
            else:
                self._refs[hid] = 0
                self._lru[hid] = None
        self._evict()

    def check(self, owned_blocks: int) -> None:
        """Debug-mode invariants: blocks owned by running requests plus pinned cached blocks equal
        the blocks in use; evictable cached blocks lie within the free ones; nothing negative."""
        pinned = sum(1 for r in self._refs.values() if r > 0) * self.blocks_per_id
        if owned_blocks + pinned != self.total - self.free:
            raise AssertionError(f"KV block conservation broken: owned {owned_blocks} + pinned {pinned} != "
                                 f"used {self.total - self.free} of {self.total}")
        if not 0 <= self.evictable <= self.free <= self.total:
            raise AssertionError(f"KV free/evictable out of range: evictable {self.evictable}, free {self.free}, "
                                 f"total {self.total}")
