"""Exact indices of a coalition game over a few players: Shapley values, the Möbius transform and
the Faith-Shap interaction index.

A game of n players is the array of its values on all 2^n coalitions, `values[mask]`, where bit i
of `mask` says player i is in. Values may carry trailing axes (one value per token, say): every
index here is linear in the values, so each is computed for all trailing entries at once.
"""

from __future__ import annotations

from itertools import combinations
from math import comb, factorial

import numpy as np

from edgemode import EdgemodeError

MAX_PLAYERS = 8  # 2^8 = 256 coalitions, each a pass over the text


def players(mask: int) -> tuple[int, ...]:
    """The players in coalition `mask`, ascending."""
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def mask_of(members) -> int:
    return sum(1 << i for i in members)


def check_players(n: int) -> None:
    if not 1 <= n <= MAX_PLAYERS:
        raise EdgemodeError(f"exact values need 1 to {MAX_PLAYERS} experts (2^n passes over the text), got {n}")


def check_order(n: int, order: int) -> None:
    check_players(n)
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= n:
        raise EdgemodeError(f"the interaction order must be an integer from 1 to {n} (the number of experts), got {order!r}")


def _game(values) -> tuple[np.ndarray, int]:
    values = np.asarray(values, np.float64)
    n = max(len(values), 1).bit_length() - 1
    if len(values) != 1 << n:
        raise EdgemodeError(f"a game needs a value for each of 2^n coalitions, got {len(values)} values")
    check_players(n)
    return values, n


def shapley(values) -> np.ndarray:
    """phi_i = sum over S without i of |S|! (n-|S|-1)! / n! (v(S + i) - v(S)); shape (n, ...)."""
    values, n = _game(values)
    phi = np.zeros((n, *values.shape[1:]))
    for mask in range(1 << n):
        s = mask.bit_count()
        weight = factorial(s) * factorial(n - s - 1) / factorial(n) if s < n else 0.0
        for i in range(n):
            if not mask >> i & 1:
                phi[i] += weight * (values[mask | 1 << i] - values[mask])
    return phi


def moebius(values) -> np.ndarray:
    """a(S) = sum over T within S of (-1)^(|S|-|T|) v(T), for every coalition S (same indexing)."""
    values, n = _game(values)
    a = values.copy()
    for i in range(n):  # one player at a time: a(S + i) -= a(S)
        for mask in range(1 << n):
            if mask >> i & 1:
                a[mask] -= a[mask ^ 1 << i]
    return a


def interactions(n: int, order: int) -> list[tuple[int, ...]]:
    """Every coalition of 1 to `order` players, by size, then in player order."""
    return [c for size in range(1, order + 1) for c in combinations(range(n), size)]


def shapley_kernel(n: int, size: int) -> float:
    """mu(S) = (n-1) / (C(n,|S|) |S| (n-|S|)) for 0 < |S| < n (the empty and full coalitions are constraints)."""
    return (n - 1) / (comb(n, size) * size * (n - size))


def faith_shap(values, order: int) -> dict[tuple[int, ...], np.ndarray]:
    """The order-`order` Faith-Shap index (Tsai, Yeh & Ravikumar, JMLR 2023), exactly.

    E minimises sum over S of mu(S) (v(S) - sum over T within S, |T| <= order, of E(T))^2, with the
    Shapley kernel mu, subject to v({}) and v(all) matched exactly (mu = infinity there). Solved as
    the constrained weighted least squares problem's KKT system. Returns {coalition: E}, every
    coalition of 1 to `order` players (E({}) = v({})). Order 1 gives the Shapley values; order n
    the Möbius transform.
    """
    values, n = _game(values)
    check_order(n, order)
    terms = [()] + interactions(n, order)
    full = (1 << n) - 1
    # X[S, T] = 1 if T lies within S: the polynomial's value on coalition S is X[S] @ E.
    X = np.array([[float(mask_of(t) & mask == mask_of(t)) for t in terms] for mask in range(1 << n)])
    w = np.array([shapley_kernel(n, mask.bit_count()) if 0 < mask < full else 0.0 for mask in range(1 << n)])
    C = X[[0, full]]  # the constraints: the polynomial equals v on {} and on all players
    k = len(terms)
    kkt = np.block([[2 * X.T @ (w[:, None] * X), C.T], [C, np.zeros((2, 2))]])
    flat = values.reshape(1 << n, -1)
    rhs = np.concatenate([2 * X.T @ (w[:, None] * flat), flat[[0, full]]])
    E = np.linalg.solve(kkt, rhs)[:k].reshape(k, *values.shape[1:])
    return {t: E[j] for j, t in enumerate(terms) if t}
