"""Tiny data with a known answer, shared by the model tests: two taste groups."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

N_USERS, N_ITEMS, GROUP = 20, 10, 5


def checkerboard() -> tuple[sp.csr_matrix, np.ndarray]:
    """Users 0-9 like items 0-4, users 10-19 items 5-9; each misses one item of its group.

    Returns the users x items matrix and, per user, the item it misses.
    """
    rows, cols = [], []
    missing = np.empty(N_USERS, dtype=np.int64)
    for user in range(N_USERS):
        start = 0 if user < N_USERS // 2 else GROUP
        missing[user] = start + user % GROUP
        for item in range(start, start + GROUP):
            if item != missing[user]:
                rows.append(user)
                cols.append(item)
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(N_USERS, N_ITEMS)), missing
