#!/usr/bin/python3
"""Independent numpy reference of the tt-matrix (MPO) decomposition ckptkit's mpo-init uses.

Written from TensorLy's tensor_train_matrix / mpo_lab's description (research note §1.2-1.3),
not from the C++ code: W (rows = prod i_k, cols = prod j_k) is reshaped to (i_1..i_N, j_1..j_N),
transposed to the interleaved order (i_1, j_1, i_2, j_2, ...), and a left-to-right TT-SVD with
truncation during the sweep yields cores T_k[r_{k-1}, i_k, j_k, r_k].

Used by tests/cli/test_mpo_init.py (layout and contraction check) and bench/mpo/bench.py (timing).
"""
import numpy as np


def interleave_perm(n):
    """(i_1..i_N, j_1..j_N) -> (i_1, j_1, ..., i_N, j_N): arange(2n).reshape(2, n).T.ravel()."""
    return np.arange(2 * n).reshape(2, n).T.ravel()


def tt_matrix(w, row_shape, col_shape, cap=None, svd_dtype=None):
    """TT-SVD of matrix w. Returns (cores, discarded) where discarded[k] is the Frobenius norm of the
    singular values dropped at bond k+1. cap: int cap on every bond (None: exact)."""
    n = len(row_shape)
    assert len(col_shape) == n and w.shape == (int(np.prod(row_shape)), int(np.prod(col_shape)))
    t = w.reshape(list(row_shape) + list(col_shape)).transpose(interleave_perm(n))
    if svd_dtype is not None:
        t = t.astype(svd_dtype)
    rem = np.ascontiguousarray(t).reshape(-1)
    cores, discarded = [], []
    r_left = 1
    for k in range(n - 1):
        m = r_left * row_shape[k] * col_shape[k]
        a = rem.reshape(m, -1)
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        r = len(s) if cap is None else min(len(s), cap)
        discarded.append(float(np.sqrt(np.sum(s[r:].astype(np.float64) ** 2))))
        cores.append(u[:, :r].reshape(r_left, row_shape[k], col_shape[k], r))
        rem = (s[:r, None] * vt[:r, :]).reshape(-1)
        r_left = r
    cores.append(rem.reshape(r_left, row_shape[-1], col_shape[-1], 1))
    return cores, discarded


def contract(cores):
    """Cores T_k[r_{k-1}, i_k, j_k, r_k] -> the (prod i, prod j) matrix, by tensordot on the bonds."""
    n = len(cores)
    acc = cores[0]  # (1, i1, j1, r1)
    for c in cores[1:]:
        acc = np.tensordot(acc, c, axes=([acc.ndim - 1], [0]))
    acc = acc.reshape(acc.shape[1:-1])  # drop r_0 = r_N = 1: axes (i1, j1, ..., iN, jN)
    rows = int(np.prod([c.shape[1] for c in cores]))
    cols = int(np.prod([c.shape[2] for c in cores]))
    # inverse of the interleave: all i's first, then all j's
    return acc.transpose(list(range(0, 2 * n, 2)) + list(range(1, 2 * n, 2))).reshape(rows, cols)


def contract_einsum(cores):
    """Second, einsum-based contraction (used to cross-check `contract`)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    n = len(cores)
    bonds = letters[:n + 1]
    ii = letters[n + 1:2 * n + 1]
    jj = letters[2 * n + 1:3 * n + 1]
    spec = ",".join(bonds[k] + ii[k] + jj[k] + bonds[k + 1] for k in range(n))
    out = np.einsum(spec + "->" + bonds[0] + ii + jj + bonds[n], *cores)
    return out.reshape(int(np.prod([c.shape[1] for c in cores])), int(np.prod([c.shape[2] for c in cores])))


def params(cores):
    return int(sum(c.size for c in cores))


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    w = rng.standard_normal((24, 30)).astype(np.float32)
    cores, disc = tt_matrix(w, [2, 3, 4], [5, 3, 2])
    err = np.linalg.norm(contract(cores) - w) / np.linalg.norm(w)
    err2 = np.linalg.norm(contract_einsum(cores) - w) / np.linalg.norm(w)
    print("exact: rel err %.3g / %.3g, bonds %s" % (err, err2, [c.shape[3] for c in cores]))
    assert err < 1e-5 and err2 < 1e-5
