"""Query kernels of the BM25 engine: score accumulation over postings and top-k selection.

The numba kernel runs queries in parallel (one accumulator per thread chunk), only visits documents
that share a term with the query, and selects the top k among those with a bounded heap. A numpy
twin gives the same results where numba is missing (or ``PILOTFISH_NO_NUMBA=1``).
"""

from __future__ import annotations

import os

import numpy as np

try:  # numba is a default dependency; keep a numpy path for platforms without it
    if os.environ.get("PILOTFISH_NO_NUMBA"):
        raise ImportError
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised with PILOTFISH_NO_NUMBA=1
    numba = None  # type: ignore[assignment]
    HAVE_NUMBA = False


def _search_numpy(term_ptr, post_slot, post_score, q_ptr, q_terms, q_weights, mask, k, n_slots):
    nq = len(q_ptr) - 1
    out_slots = np.full((nq, k), -1, dtype=np.int64)
    out_scores = np.zeros((nq, k), dtype=post_score.dtype)
    for qi in range(nq):
        terms = q_terms[q_ptr[qi] : q_ptr[qi + 1]]
        weights = q_weights[q_ptr[qi] : q_ptr[qi + 1]]
        if len(terms) == 0:
            continue
        slots = np.concatenate([post_slot[term_ptr[t] : term_ptr[t + 1]] for t in terms])
        vals = np.concatenate(
            [w * post_score[term_ptr[t] : term_ptr[t + 1]] for t, w in zip(terms, weights, strict=True)]
        )
        if len(mask):
            keep = mask[slots].astype(bool)
            slots, vals = slots[keep], vals[keep]
        if len(slots) == 0:
            continue
        cand, inv = np.unique(slots, return_inverse=True)
        acc = np.zeros(len(cand), dtype=np.float64)
        np.add.at(acc, inv, vals)
        acc = acc.astype(post_score.dtype)
        nz = acc != 0
        cand, acc = cand[nz], acc[nz]
        m = min(k, len(cand))
        top = np.lexsort((cand, -acc))[:m]
        out_slots[qi, :m] = cand[top]
        out_scores[qi, :m] = acc[top]
    return out_slots, out_scores


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True)
    def _better(s1, d1, s2, d2):  # type: ignore[no-untyped-def]
        return s1 > s2 or (s1 == s2 and d1 < d2)

    @numba.njit(cache=True, nogil=True)
    def _sift_down(hs, hd, n, i):  # type: ignore[no-untyped-def]
        # min-heap on "better": the root is the worst kept candidate
        while True:
            l = 2 * i + 1
            if l >= n:
                return
            c = l
            r = l + 1
            if r < n and _better(hs[l], hd[l], hs[r], hd[r]):
                c = r
            if _better(hs[i], hd[i], hs[c], hd[c]):
                hs[i], hs[c] = hs[c], hs[i]
                hd[i], hd[c] = hd[c], hd[i]
                i = c
            else:
                return

    @numba.njit(cache=True, nogil=True)
    def _push(hs, hd, n, m, s, d):  # type: ignore[no-untyped-def]
        """Offer (s, d) to a bounded heap holding n of at most m items; returns the new n."""
        if n < m:
            hs[n] = s
            hd[n] = d
            n += 1
            if n == m:
                for h in range(m // 2 - 1, -1, -1):
                    _sift_down(hs, hd, m, h)
        elif _better(s, d, hs[0], hd[0]):
            hs[0] = s
            hd[0] = d
            _sift_down(hs, hd, m, 0)
        return n

    # one compiled loop over a query's postings, its accumulator and its heap (~70 lines): split into calls, the
    # hot loop would pay for them per posting
    @numba.njit(cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz"})
    def _one_query(term_ptr, post_slot, post_score, terms, weights, mask, k, acc, seen, touched, out_s, out_d):  # type: ignore[no-untyped-def]
        use_mask = len(mask) > 0
        n_slots = len(acc)
        total = 0
        for j in range(len(terms)):
            total += term_ptr[terms[j] + 1] - term_ptr[terms[j]]
        hs = np.empty(k, dtype=acc.dtype)
        hd = np.empty(k, dtype=np.int64)
        n = 0
        if 4 * total > n_slots:
            # dense: accumulate without bookkeeping, then one sequential scan of all slots
            for j in range(len(terms)):
                t = terms[j]
                w = weights[j]
                if use_mask:
                    for p in range(term_ptr[t], term_ptr[t + 1]):
                        d = post_slot[p]
                        if mask[d] != 0:
                            acc[d] += w * post_score[p]
                else:
                    for p in range(term_ptr[t], term_ptr[t + 1]):
                        acc[post_slot[p]] += w * post_score[p]
            # slots ascend here, so a tie with the worst kept never wins: test s > root only;
            # once the heap is full the first test is almost always false (well predicted)
            # blocks whose maximum cannot enter the heap are skipped after a vectorised max
            for lo in range(0, n_slots, 64):
                hi = min(lo + 64, n_slots)
                if n == k:
                    mx = acc[lo]
                    for d in range(lo + 1, hi):
                        mx = max(mx, acc[d])
                    if not mx > hs[0]:
                        continue
                for d in range(lo, hi):
                    s = acc[d]
                    if n == k:
                        if s > hs[0] and s != 0:
                            n = _push(hs, hd, n, k, s, d)
                    elif s != 0:
                        n = _push(hs, hd, n, k, s, d)
            acc[:] = 0
        else:
            # sparse: remember the documents touched and select among those only
            nt = 0
            for j in range(len(terms)):
                t = terms[j]
                w = weights[j]
                for p in range(term_ptr[t], term_ptr[t + 1]):
                    d = post_slot[p]
                    if use_mask and mask[d] == 0:
                        continue
                    if seen[d] == 0:
                        seen[d] = 1
                        touched[nt] = d
                        nt += 1
                    acc[d] += w * post_score[p]
            for i in range(nt):
                d = touched[i]
                s = acc[d]
                acc[d] = 0
                seen[d] = 0
                if s != 0 and (n < k or s >= hs[0]):
                    n = _push(hs, hd, n, k, s, d)
        if n < k:  # fewer than k candidates: the heap was never built
            for h in range(n // 2 - 1, -1, -1):
                _sift_down(hs, hd, n, h)
        size = n  # pop worst-first into the tail of the output
        while size > 0:
            out_s[size - 1] = hs[0]
            out_d[size - 1] = hd[0]
            size -= 1
            hs[0] = hs[size]
            hd[0] = hd[size]
            _sift_down(hs, hd, size, 0)

    @numba.njit(cache=True, parallel=True)
    def _search_numba(term_ptr, post_slot, post_score, q_ptr, q_terms, q_weights, mask, k, n_slots, n_chunks):  # type: ignore[no-untyped-def]
        nq = len(q_ptr) - 1
        out_slots = np.full((nq, k), -1, dtype=np.int64)
        out_scores = np.zeros((nq, k), dtype=post_score.dtype)
        per = (nq + n_chunks - 1) // n_chunks
        for c in numba.prange(n_chunks):
            lo = c * per
            hi = min(nq, lo + per)
            if lo >= hi:
                continue
            acc = np.zeros(n_slots, dtype=post_score.dtype)
            seen = np.zeros(n_slots, dtype=np.uint8)
            touched = np.empty(n_slots, dtype=np.int64)
            for qi in range(lo, hi):
                a, b = q_ptr[qi], q_ptr[qi + 1]
                _one_query(
                    term_ptr,
                    post_slot,
                    post_score,
                    q_terms[a:b],
                    q_weights[a:b],
                    mask,
                    k,
                    acc,
                    seen,
                    touched,
                    out_scores[qi],
                    out_slots[qi],
                )
        return out_slots, out_scores


def search(term_ptr, post_slot, post_score, q_ptr, q_terms, q_weights, mask, k, n_slots, threads=0):  # type: ignore[no-untyped-def]
    """Top-k slots and scores per query; slot -1 pads queries with fewer than k scored documents.

    Only documents with a nonzero score are returned. Ties are broken by the lower slot.
    """
    if not HAVE_NUMBA:
        return _search_numpy(term_ptr, post_slot, post_score, q_ptr, q_terms, q_weights, mask, k, n_slots)
    nq = len(q_ptr) - 1
    n_threads = threads or numba.get_num_threads()
    n_chunks = max(1, min(nq, n_threads))
    return _search_numba(term_ptr, post_slot, post_score, q_ptr, q_terms, q_weights, mask, k, n_slots, n_chunks)
