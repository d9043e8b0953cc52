"""Top-N for every user, and similar items for every item, on all cores in bounded memory.

``batch_recommend`` returns what ``model.recommend(userids,
user_items[userids], ...)`` returns for a batch of users (same ids, order, ties
to the smaller item id, -1 / -inf padding; a factor model's scores may differ
in the last bit, as BLAS may round blocks of other heights, and a one-user call
through its matrix-vector path, differently), but faster: users are scored in blocks whose size is
set by a memory budget, blocks run on a thread pool (matrix products,
comparisons and sorts release the GIL; BLAS is held to one thread per worker so
the two do not oversubscribe the cores), factor models' products are written
straight into a reused buffer, and the top-N selection (``fast_top_n``) avoids a
full partition of every row. ``iter_recommend`` yields the same rows batch by
batch, so that a caller can write each batch out before the next is kept
(memory then grows with the batch, not with users x N).

The selection splits each row's columns into ``4 N`` strided groups; the N-th
largest group maximum is a threshold that at least N scores reach, so the
top N are among the (few) scores at or above it: only those are sorted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.models.base import Recommender
from recsys.models.factors import FactorRecommender
from recsys.models.sparse_utils import align_items, as_user_items

#: Working memory of all blocks in flight together (scores + masks), bytes.
MEMORY_BUDGET = 256 << 20
#: Rows per block unless the memory budget allows fewer: BLAS packs the whole
#: item-factor matrix for every product, which smaller blocks fail to amortise.
BLOCK_ROWS = 512
#: Groups per requested result in ``fast_top_n``'s threshold (see module doc).
GROUPS_PER_RESULT = 4
#: Rows narrower than ``GROUPS_PER_RESULT * n * MIN_GROUP_SIZE`` sort every finite score.
MIN_GROUP_SIZE = 2
#: Seconds between ``on_block`` calls while a block is being scored.
BEAT_S = 0.1

_LOWEST = np.finfo(np.float32).min


@dataclass
class ScoringStats:
    """Where the time of one ``batch_recommend`` / ``batch_similar_items`` call went.

    ``product_seconds`` and ``selection_seconds`` are summed over the worker
    threads (scoring vs. exclusions + top-N); ``wall_seconds`` is the elapsed
    time of the call. ``flops`` is known for factor models only.
    ``full_sort_rows`` counts rows where the threshold did not apply (rows
    narrower than ``8 N``, fewer than N finite scores, NaNs) and every finite
    score was sorted.
    """

    rows: int = 0
    n_items: int = 0
    N: int = 0
    block_rows: int = 0
    blocks: int = 0
    threads: int = 0
    product_seconds: float = 0.0
    selection_seconds: float = 0.0
    wall_seconds: float = 0.0
    flops: float | None = None
    full_sort_rows: int = 0

    @property
    def product_gflops(self) -> float | None:
        """GFLOP/s of the product phase over all threads (flops / its mean time per thread)."""
        if self.flops is None or self.product_seconds <= 0:
            return None
        return self.flops / (self.product_seconds / max(self.threads, 1)) / 1e9

    def as_dict(self) -> dict:
        """Plain values (for JSON or MLflow), with ``product_gflops``."""
        out = dict(self.__dict__)
        out["product_gflops"] = self.product_gflops
        return out


# -- selection -------------------------------------------------------------------


def fast_top_n(
    scores: np.ndarray,
    n: int,
    *,
    exclude: np.ndarray | None = None,
    exclude_per_row: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The contract of ``recsys.models.topn.top_n`` (which see), faster on wide rows.

    Best ``n`` columns per row, ties to the smaller column, NaN as -inf, -1 /
    -inf padding. ``scores`` is modified in place.
    """
    _exclude(scores, exclude, exclude_per_row)
    ids, best, _ = _select(np.ascontiguousarray(scores), n)
    return ids, best


def _exclude(
    scores: np.ndarray, exclude: np.ndarray | None, exclude_per_row: sp.csr_matrix | None
) -> None:
    """Set excluded columns (a mask or index array) and per-row entries to -inf."""
    if exclude is not None:
        scores[:, exclude] = -np.inf
    if exclude_per_row is not None and exclude_per_row.nnz:
        rows = np.repeat(np.arange(scores.shape[0]), np.diff(exclude_per_row.indptr))
        scores[rows, exclude_per_row.indices] = -np.inf


def _select(
    scores: np.ndarray, n: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top ``n`` of each row of a C-contiguous float32 block.

    Returns (ids, scores, number of rows whose every finite score had to be
    sorted). ``mask`` is an optional bool buffer of at least the block's size.
    """
    if n < 0:
        raise ValueError(f"N must be >= 0, got {n}")
    n_rows, n_cols = scores.shape
    ids = np.full((n_rows, n), -1, dtype=np.int32)
    best = np.full((n_rows, n), -np.inf, dtype=np.float32)
    if n == 0 or n_rows == 0 or n_cols == 0:
        return ids, best, 0
    n_groups = GROUPS_PER_RESULT * n
    if n_cols >= MIN_GROUP_SIZE * n_groups:
        threshold, complete = _thresholds(scores, n, n_groups)
    else:  # narrow rows: sort every finite score
        threshold = np.full(n_rows, _LOWEST, dtype=np.float32)
        complete = np.ones(n_rows, dtype=bool)
    flat = _reaching(scores, threshold, mask)
    rows = flat // n_cols
    counts = np.bincount(rows, minlength=n_rows)
    # A finite threshold yields >= n candidates unless NaNs hid in the group maxima;
    # such rows take every finite score instead.
    short = np.flatnonzero(~complete & (counts < n))
    if len(short):
        redo = np.flatnonzero(scores[short] >= _LOWEST)
        redo_rows = short[redo // n_cols]
        flat = np.concatenate([flat[~np.isin(rows, short)], redo_rows * n_cols + redo % n_cols])
        rows = flat // n_cols
        counts = np.bincount(rows, minlength=n_rows)

    values = scores.reshape(-1)[flat]
    cols = (flat - rows * n_cols).astype(np.int32)
    # Row ascending, then score descending; the stable sort keeps columns ascending.
    order = np.argsort((rows << 32) - _ordered_bits(values), kind="stable")
    if len(order):
        width = np.arange(n)
        valid = width[None, :] < counts[:, None]
        starts = np.cumsum(counts) - counts
        take = order[np.where(valid, starts[:, None] + width[None, :], 0)]
        ids[valid] = cols[take][valid]
        best[valid] = values[take][valid]
    return ids, best, int(complete.sum()) + len(short)


def _reaching(scores: np.ndarray, threshold: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Flat (row-major) positions of the scores >= their row's threshold, ascending."""
    if mask is None:
        return np.flatnonzero(scores >= threshold[:, None])
    above = mask.reshape(-1)[: scores.size].reshape(scores.shape)
    np.greater_equal(scores, threshold[:, None], out=above)
    return np.flatnonzero(above)


def _thresholds(scores: np.ndarray, n: int, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, a score that at least ``n`` entries reach, and whether it takes every finite one.

    Column j belongs to group ``j % n_groups``; the n-th largest group maximum
    is reached by the maximum of n distinct groups. Rows with fewer than n
    groups holding a finite score take every finite score (``complete``).
    """
    n_rows, n_cols = scores.shape
    size = n_cols // n_groups
    head = scores[:, : size * n_groups].reshape(n_rows, size, n_groups)
    maxima = head.max(axis=1)
    tail = n_cols - size * n_groups
    if tail:
        np.maximum(maxima[:, :tail], scores[:, size * n_groups :], out=maxima[:, :tail])
    threshold = np.partition(maxima, n_groups - n, axis=1)[:, n_groups - n]
    complete = threshold == -np.inf
    threshold[complete] = _LOWEST  # ">= lowest finite" = every finite score
    return threshold, complete


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """int64 with the order of the (non-NaN) float32 ``values``; -0.0 equals 0.0."""
    bits = (values + np.float32(0.0)).view(np.int32)
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)
    return bits.astype(np.int64)


# -- blocks on a thread pool ----------------------------------------------------------


def default_threads() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _block_rows(
    n_rows: int, n_items: int, threads: int, block_rows: int | None, memory_budget: int
) -> int:
    """The given block size, or the largest one within budget (at most ``BLOCK_ROWS``)
    that still gives every thread a block."""
    if block_rows is not None:
        if block_rows < 1:
            raise ValueError(f"block size must be >= 1, got {block_rows}")
        return int(block_rows)
    per_row = n_items * 5  # float32 scores + bool mask
    budget_rows = memory_budget // max(threads * per_row, 1)
    shared_rows = -(-n_rows // threads)
    return int(max(2, min(budget_rows, BLOCK_ROWS, shared_rows)))


class _Buffers(threading.local):
    """Per-thread reusable score and mask buffers (avoids page faults of fresh arrays)."""

    def get(self, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        if getattr(self, "scores", None) is None or self.scores.shape != (rows, cols):
            self.scores = np.empty((rows, cols), dtype=np.float32)
            self.mask = np.empty((rows, cols), dtype=bool)
        return self.scores, self.mask


def _blocks(
    n_rows: int,
    n_items: int,
    N: int,
    score_block: Callable[[slice, np.ndarray], sp.csr_matrix | None],
    excluded_columns: np.ndarray | None,
    *,
    labels: np.ndarray | None,
    block_rows: int,
    threads: int,
    progress: bool,
    stats: ScoringStats,
    desc: str,
    batch_rows: int | None = None,
    on_block: Callable[[], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Score, exclude and select every block of ``block_rows`` rows on ``threads`` workers.

    ``score_block(rows, out)`` writes the block's float32 scores into ``out``
    (at least 2 rows: single rows are padded, so that a one-row product never
    takes BLAS's matrix-vector path, whose rounding differs) and returns the
    entries to exclude per row (CSR) or None; ``excluded_columns`` are
    excluded from every row.

    Yields (``labels`` of the rows, or their positions; ids; scores) per batch
    of whole blocks, in row order: ``batch_rows`` rounded up to a multiple of
    ``block_rows``, or every row at once when None. The next batch is scored
    while the caller handles one, so at most two batches' results are held.
    ``on_block`` is called in the caller's thread after each block is done, and every
    ``BEAT_S`` seconds while it waits for one (e.g. to renew a lock during a long block).
    While the generator is open, BLAS is held to one thread in the whole process.
    """
    buffers = _Buffers()
    buffer_rows = max(2, block_rows)
    starts = range(0, n_rows, block_rows)
    per_batch = max(1, len(starts) if batch_rows is None else -(-batch_rows // block_rows))
    stats.rows, stats.n_items, stats.N = n_rows, n_items, N
    stats.block_rows, stats.blocks, stats.threads = block_rows, len(starts), threads

    def work(start: int, ids: np.ndarray, best: np.ndarray, offset: int):
        block = slice(start, min(start + block_rows, n_rows))
        count = block.stop - block.start
        scores, mask = buffers.get(buffer_rows, n_items)
        began = time.perf_counter()
        excluded_entries = score_block(block, scores[: max(count, 2)])
        scored = time.perf_counter()
        dense = scores[:count]
        _exclude(dense, excluded_columns, excluded_entries)
        out = slice(block.start - offset, block.stop - offset)
        ids[out], best[out], full = _select(dense, N, mask)
        return count, scored - began, time.perf_counter() - scored, full

    def submit(pool: ThreadPoolExecutor, first: int):
        rows = slice(starts[first], min(starts[first] + per_batch * block_rows, n_rows))
        ids = np.empty((rows.stop - rows.start, N), dtype=np.int32)
        best = np.empty((rows.stop - rows.start, N), dtype=np.float32)
        blocks = starts[first : first + per_batch]
        return rows, ids, best, [pool.submit(work, s, ids, best, rows.start) for s in blocks]

    began = time.perf_counter()
    bar = _progress_bar(n_rows, desc) if progress else None
    firsts = iter(range(0, len(starts), per_batch))
    try:
        with threadpool_limits(1, "blas"), ThreadPoolExecutor(max_workers=threads) as pool:
            first = next(firsts, None)
            queued = None if first is None else submit(pool, first)
            try:
                while queued is not None:
                    rows, ids, best, futures = queued
                    for future in futures:
                        while on_block is not None and not wait([future], BEAT_S).done:
                            on_block()  # a block longer than a lock's TTL keeps the lock
                        count, product, selection, full = future.result()
                        stats.product_seconds += product
                        stats.selection_seconds += selection
                        stats.full_sort_rows += full
                        if bar is not None:
                            bar.update(count)
                        if on_block is not None:
                            on_block()
                    first = next(firsts, None)
                    queued = None if first is None else submit(pool, first)
                    at = np.arange(rows.start, rows.stop) if labels is None else labels[rows]
                    yield at, ids, best
            finally:  # an error or a caller that stops early: drop the blocks not started
                for future in [] if queued is None else queued[3]:
                    future.cancel()
    finally:
        if bar is not None:
            bar.close()
        stats.wall_seconds = time.perf_counter() - began


def _collect(
    batches: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], N: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every batch's (ids, scores) in one array each (a single batch is not copied)."""
    done = [(ids, best) for _, ids, best in batches]
    if len(done) == 1:
        return done[0]
    if not done:
        return np.empty((0, N), dtype=np.int32), np.empty((0, N), dtype=np.float32)
    return np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="rows", desc=desc)


def _pad_pair(ids: np.ndarray) -> np.ndarray:
    """``ids`` with its only entry repeated (one-row blocks are scored as two rows)."""
    return np.repeat(ids, 2) if len(ids) == 1 else ids


def _is_factor_model(model: Recommender) -> bool:
    return isinstance(model, FactorRecommender) and type(model).score is FactorRecommender.score


def _factor_cosine(model: Recommender) -> tuple[np.ndarray, np.ndarray] | None:
    """(factors, norms) when ``model`` ranks similar items by ``FactorRecommender``'s cosine.

    ``batch_similar_items`` then repeats that computation in place, in the same
    float32 operations and order (so with the same results), without its temporaries.
    """
    if not (
        isinstance(model, FactorRecommender)
        and type(model)._similar_scores is FactorRecommender._similar_scores
    ):
        return None
    factors = model._similarity_factors()
    norms = np.linalg.norm(factors, axis=1)
    norms[norms == 0] = 1e-10
    return factors, norms


def _excluded_columns(model: Recommender, filter_items, items) -> np.ndarray | None:
    mask = model._item_mask(filter_items, items)
    return None if mask is None else np.flatnonzero(mask)


# -- public entry points ---------------------------------------------------------------


def batch_recommend(
    model: Recommender, user_items: sp.spmatrix, userids=None, N: int = 100, **options
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``N`` (ids int32, scores float32), ``len(userids) x N``, for many users at once:
    ``iter_recommend`` (which see, for the options) in one batch."""
    return _collect(iter_recommend(model, user_items, userids, N, **options), N)


def iter_recommend(
    model: Recommender,
    user_items: sp.spmatrix,
    userids=None,
    N: int = 100,
    filter_already_liked_items: bool = True,
    filter_items=None,
    items=None,
    block_users: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    memory_budget: int = MEMORY_BUDGET,
    stats: ScoringStats | None = None,
    exclude: sp.spmatrix | None = None,
    batch_rows: int | None = None,
    on_block: Callable[[], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Top-``N`` of many users, as (user rows, ids int32, scores float32) per batch of
    about ``batch_rows`` users (whole blocks; default: all at once), in ``userids`` order.

    ``user_items`` is the whole users x items matrix (row u = user u);
    ``userids`` defaults to all its rows. Equal to ``model.recommend(userids,
    user_items[userids], N, filter_already_liked_items, filter_items, items)``.
    Users are scored ``block_users`` at a time (default: from ``BLOCK_ROWS``
    and ``memory_budget``) on ``threads`` workers (default: every core).
    Timings go into ``stats`` when given. ``exclude`` (users x items, same rows
    as ``user_items``) replaces the liked rows as the items each user must not
    get, e.g. only what they bought while they are scored from views too.
    The blocks, and so the results, do not depend on ``batch_rows``; arguments
    are checked at once, the scoring runs as the batches are asked for (see
    ``_blocks`` for ``on_block``).
    """
    model._check_fitted()
    if N < 0:
        raise ValueError(f"N must be >= 0, got {N}")
    matrix = align_items(as_user_items(user_items), model.n_items_)
    uids = None if userids is None else _row_ids(userids, matrix.shape[0], "userids")
    n_rows = matrix.shape[0] if uids is None else len(uids)
    threads = threads or default_threads()
    block = _block_rows(n_rows, model.n_items_, threads, block_users, memory_budget)
    stats = stats if stats is not None else ScoringStats()
    excluded = _excluded_columns(model, filter_items, items)
    drop_liked = filter_already_liked_items and not model.recommends_already_liked
    if exclude is not None:
        exclude = align_items(as_user_items(exclude), model.n_items_)
        if exclude.shape[0] != matrix.shape[0]:
            raise ValueError(f"exclude has {exclude.shape[0]} rows, user_items {matrix.shape[0]}")

    def users_of(rows: slice) -> tuple[np.ndarray, sp.csr_matrix]:
        if uids is None:
            return np.arange(rows.start, rows.stop), matrix[rows]
        picked = uids[rows]
        return picked, matrix[picked]

    def dropped(users: np.ndarray, liked: sp.csr_matrix) -> sp.csr_matrix | None:
        if exclude is not None:
            return exclude[users]
        return liked if drop_liked else None

    if _is_factor_model(model):
        item_factors_t = model.item_factors_.T
        stats.flops = 2.0 * n_rows * model.n_items_ * item_factors_t.shape[0]

        def score_block(rows: slice, out: np.ndarray) -> sp.csr_matrix | None:
            users, liked = users_of(rows)
            vectors = model.user_vectors(users, liked)
            if len(users) == 1:
                vectors = np.repeat(vectors, 2, axis=0)
            np.matmul(vectors, item_factors_t, out=out)
            return dropped(users, liked)

    else:

        def score_block(rows: slice, out: np.ndarray) -> sp.csr_matrix | None:
            users, liked = users_of(rows)
            if len(users) == 1:
                scores = model.score(_pad_pair(users), sp.csr_matrix(sp.vstack([liked, liked])))
            else:
                scores = model.score(users, liked)
            np.copyto(out, scores, casting="same_kind")
            return dropped(users, liked)

    return _blocks(
        n_rows,
        model.n_items_,
        N,
        score_block,
        excluded,
        labels=uids,
        block_rows=block,
        threads=threads,
        progress=progress,
        stats=stats,
        desc="recommend",
        batch_rows=batch_rows,
        on_block=on_block,
    )


def batch_similar_items(
    model: Recommender, K: int = 20, itemids=None, **options
) -> tuple[np.ndarray, np.ndarray]:
    """The ``K`` most similar items (ids int32, scores float32) of many items at once:
    ``iter_similar_items`` (which see, for the options) in one batch."""
    return _collect(iter_similar_items(model, K, itemids, **options), K)


def iter_similar_items(
    model: Recommender,
    K: int = 20,
    itemids=None,
    filter_items=None,
    items=None,
    block_items: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    memory_budget: int = MEMORY_BUDGET,
    stats: ScoringStats | None = None,
    batch_rows: int | None = None,
    on_block: Callable[[], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The ``K`` most similar items of many items, as (item ids, ids int32, scores
    float32) per batch of about ``batch_rows`` items.

    ``itemids`` defaults to every item of the model. Equal to
    ``model.similar_items(itemids, N=K, filter_items=..., items=...)``; blocks,
    threads, ``stats``, batches and ``on_block`` as in ``iter_recommend``.
    """
    model._check_fitted()
    if K < 0:
        raise ValueError(f"K must be >= 0, got {K}")
    n_items = model.n_items_
    iids = np.arange(n_items) if itemids is None else _row_ids(itemids, n_items, "itemids")
    threads = threads or default_threads()
    block = _block_rows(len(iids), n_items, threads, block_items, memory_budget)
    stats = stats if stats is not None else ScoringStats()
    excluded = _excluded_columns(model, filter_items, items)

    cosine = _factor_cosine(model)
    if cosine is not None:
        stats.flops = 2.0 * len(iids) * n_items * cosine[0].shape[1]

    def score_block(rows: slice, out: np.ndarray) -> sp.csr_matrix:
        block_ids = iids[rows]
        if cosine is None:
            np.copyto(out, model._similar_scores(_pad_pair(block_ids)), casting="same_kind")
        else:
            factors, norms = cosine
            padded = _pad_pair(block_ids)
            np.matmul(factors[padded], factors.T, out=out)
            np.divide(out, norms[None, :], out=out)
            np.divide(out, norms[padded, None], out=out)
        count = len(block_ids)
        return sp.csr_matrix(  # each item itself
            (np.ones(count, dtype=np.float32), block_ids, np.arange(count + 1)),
            shape=(count, n_items),
        )

    return _blocks(
        len(iids),
        n_items,
        K,
        score_block,
        excluded,
        labels=iids,
        block_rows=block,
        threads=threads,
        progress=progress,
        stats=stats,
        desc="similar items",
        batch_rows=batch_rows,
        on_block=on_block,
    )


def _row_ids(ids, limit: int, what: str) -> np.ndarray:
    values = np.atleast_1d(np.asarray(ids))
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise TypeError(f"{what} must be a 1-D array of integers")
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= limit):
        raise IndexError(f"{what} must lie in [0, {limit})")
    return values
