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

Ids and KV blocks. An id's tokens need not fill whole KV blocks (512-token ids in 48-token blocks).
As in vLLM, only whole blocks are cached: the first j ids cover j * prefix_block_tokens tokens, of
which the floor(j * prefix_block_tokens / block_tokens) whole blocks are reusable (`prefix_tokens(j)`
tokens in `prefix_blocks(j)` blocks); the tokens of a partial last block are prefilled again. The id
at position i holds the whole blocks that end inside its tokens, so its block count depends on its
position (ids chain, so an id keeps its position; an id seen at another position is not matched).
A request that reuses j ids therefore holds exactly `blocks_for(context)` blocks, as one that
prefilled everything would.
"""
from __future__ import annotations

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
        self.prefix_block_tokens = int(prefix_block_tokens)
        # whole KV blocks in the first j ids' tokens, j = 0 .. the most ids the table's contexts hold
        n_ids = (len(self._table) - 1) * self.block_tokens // self.prefix_block_tokens
        whole = np.arange(n_ids + 1, dtype=np.int64) * self.prefix_block_tokens // self.block_tokens
        self._prefix_tokens = (whole * self.block_tokens).tolist()
        # blocks of those tokens' KV (a constant per-sequence state, table[0], stays with the request)
        self._prefix_blocks = (self._table_arr[whole] - self._table_arr[0]).tolist()
        self._id_blocks = np.diff(self._table_arr[whole]).tolist()  # blocks of the id at position i
        self._refs: dict[int, int] = {}       # cached hash id -> running requests using it
        self._pos: dict[int, int] = {}        # cached hash id -> its position in a prompt's ids
        self._lru: OrderedDict[int, None] = OrderedDict()  # cached ids nobody uses, oldest first
        self._evictable = 0                   # blocks of the ids in _lru

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
        return self._evictable

    def prefix_tokens(self, n_ids: int) -> int:
        """Prompt tokens a request reusing its first n_ids cached ids skips (whole blocks only)."""
        return self._prefix_tokens[n_ids]

    def prefix_blocks(self, n_ids: int) -> int:
        """KV blocks of those tokens, shared with every request that reuses the same ids."""
        return self._prefix_blocks[n_ids]

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
        while self._evictable > self.free:
            hid, _ = self._lru.popitem(last=False)
            self._evictable -= self._id_blocks[self._pos.pop(hid)]
            del self._refs[hid]

    # -- prefix cache --------------------------------------------------------------------------
    def match(self, ids, max_tokens: int) -> list[int]:
        """Pin the longest cached leading run of `ids` covering at most `max_tokens` tokens;
        returns the pinned ids (their blocks move from free to used)."""
        if not self.prefix_caching or not ids:
            return []
        pinned = []
        refs_of, pos_of = self._refs, self._pos
        for i, hid in enumerate(ids[: max_tokens // self.prefix_block_tokens]):
            refs = refs_of.get(hid)
            if refs is None or pos_of[hid] != i:
                break
            if refs == 0:
                del self._lru[hid]
                blocks = self._id_blocks[i]
                self._evictable -= blocks
                self.free -= blocks
            refs_of[hid] = refs + 1
            pinned.append(hid)
        return pinned

    def unpin(self, ids) -> None:
        for i, hid in enumerate(ids):  # pinned ids are a prompt's leading ids: position i
            refs = self._refs[hid] - 1
            self._refs[hid] = refs
            if refs == 0:
                self._lru[hid] = None
                blocks = self._id_blocks[i]
                self._evictable += blocks
                self.free += blocks

    def insert(self, ids) -> None:
        """Keep a finished request's prompt blocks as cached prefixes (most recent last)."""
        if not self.prefix_caching:
            return
        for i, hid in enumerate(ids):
            refs = self._refs.get(hid)
            if refs is None:
                self._refs[hid] = 0
                self._pos[hid] = i
                self._lru[hid] = None
                self._evictable += self._id_blocks[i]
            elif refs == 0 and self._pos[hid] == i:
                self._lru.move_to_end(hid)
        self._evict()

    def check(self, owned_blocks: int) -> None:
        """Debug-mode invariants: blocks owned by running requests plus pinned cached blocks equal
        the blocks in use; evictable cached blocks lie within the free ones; nothing negative."""
        pinned = sum(self._id_blocks[self._pos[h]] for h, r in self._refs.items() if r > 0)
        if self._evictable != sum(self._id_blocks[self._pos[h]] for h in self._lru):
            raise AssertionError(f"evictable count {self._evictable} is not the LRU ids' blocks")
        if owned_blocks + pinned != self.total - self.free:
            raise AssertionError(f"KV block conservation broken: owned {owned_blocks} + pinned {pinned} != "
                                 f"used {self.total - self.free} of {self.total}")
        if not 0 <= self.evictable <= self.free <= self.total:
            raise AssertionError(f"KV free/evictable out of range: evictable {self.evictable}, free {self.free}, "
                                 f"total {self.total}")
