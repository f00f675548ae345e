"""Generate OPTICS comparison cases for test/optics.test.ts with scikit-learn.

Each case: unit vectors `points` [n, dim] (float64), `min_samples`, and
scikit-learn's `OPTICS(min_samples=m, metric=cos_dist)` outputs with all other
parameters at their defaults. `cos_dist` is `1 - x.y` summed sequentially in
float64 (the summation the parity fixtures use; numpy's BLAS `np.dot` can
differ in the last bit, which flips the sign of rounded zeros).

Run with Debian's scikit-learn:  /usr/bin/python3 test/data/optics/generate.py
(written with scikit-learn 1.2.1, numpy 1.24.2).
"""
import json
import os
import warnings

import numpy as np
import sklearn
from sklearn.cluster import OPTICS

warnings.filterwarnings("ignore")  # "All reachability values are inf" etc.
HERE = os.path.dirname(os.path.abspath(__file__))


def cos_dist(a, b):
    s = 0.0
    for u, v in zip(a.tolist(), b.tolist()):
        s += u * v
    return 1.0 - s


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def uniform(rng, n, dim):
    return unit(rng.standard_normal((n, dim)))


def clustered(rng, n, dim, k, spread):
    centres = unit(rng.standard_normal((k, dim)))
    which = rng.integers(0, k, n)
    return unit(centres[which] + spread * rng.standard_normal((n, dim)))


def with_duplicates(rng, x, count):
    """Overwrite `count` random rows with copies of other rows (exact ties)."""
    x = x.copy()
    n = x.shape[0]
    for _ in range(count):
        src, dst = rng.integers(0, n, 2)
        x[dst] = x[src]
    return x


def quantised(rng, n, dim, levels):
    """Few distinct coordinates: many equal distances (ties that survive rounding)."""
    x = rng.integers(-levels, levels + 1, (n, dim)).astype(np.float64)
    x[np.all(x == 0, axis=1), 0] = 1.0  # no zero vectors
    return unit(x)


def none_if_inf(a):
    return [None if not np.isfinite(v) else float(v) for v in a]


def case(name, x, m, note):
    o = OPTICS(min_samples=m, metric=cos_dist).fit(x)
    # the same with brute-force neighbours: for dim <= 15 scikit-learn's 'auto'
    # uses a ball tree, whose pruning assumes a true metric (1 - x.y is not one)
    b = OPTICS(min_samples=m, metric=cos_dist, algorithm="brute").fit(x)
    agrees = bool(
        (b.labels_ == o.labels_).all()
        and (b.ordering_ == o.ordering_).all()
        and np.array_equal(b.reachability_, o.reachability_)
        and np.array_equal(b.core_distances_, o.core_distances_)
    )
    out = {
        "name": name,
        "note": note,
        "sklearn": sklearn.__version__,
        "n": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "min_samples": int(m),
        "points": [float(v) for v in x.ravel()],
        "labels": [int(v) for v in o.labels_],
        "ordering": [int(v) for v in o.ordering_],
        "reachability": none_if_inf(o.reachability_),
        "core_distances": none_if_inf(o.core_distances_),
        "predecessor": [int(v) for v in o.predecessor_],
        "brute_agrees": agrees,
    }
    if not agrees:
        # exact k-nearest neighbours (what a correct implementation computes)
        out["brute"] = {
            "labels": [int(v) for v in b.labels_],
            "ordering": [int(v) for v in b.ordering_],
            "reachability": none_if_inf(b.reachability_),
            "core_distances": none_if_inf(b.core_distances_),
            "predecessor": [int(v) for v in b.predecessor_],
        }
        print("  ball tree vs brute: labels differ at", int((b.labels_ != o.labels_).sum()), "points; core distances differ at",
              int((b.core_distances_ != o.core_distances_).sum()))
    return out


def main():
    specs = []
    rng = np.random.default_rng(20240501)
    for i, (n, dim, m) in enumerate([(2, 3, 2), (3, 3, 2), (5, 4, 3), (12, 3, 2), (30, 8, 4), (60, 20, 5), (100, 16, 10)]):
        specs.append((f"uniform_{i}", uniform(rng, n, dim), m, "uniform on the sphere"))
    for i, (n, dim, k, spread, m) in enumerate([(20, 3, 3, 0.1, 3), (40, 5, 4, 0.15, 4), (80, 32, 5, 0.3, 6), (100, 3, 6, 0.05, 8), (50, 64, 3, 0.5, 2), (97, 7, 4, 0.2, 10)]):
        specs.append((f"clustered_{i}", clustered(rng, n, dim, k, spread), m, f"{k} clusters, spread {spread}"))
    for i, (n, dim, k, dups, m) in enumerate([(19, 3, 3, 5, 3), (40, 4, 3, 15, 4), (70, 24, 4, 30, 5), (25, 6, 2, 20, 6)]):
        x = with_duplicates(rng, clustered(rng, n, dim, k, 0.1), dups)
        specs.append((f"duplicates_{i}", x, m, f"{dups} duplicated rows"))
    for i, (n, dim, levels, m) in enumerate([(30, 3, 1, 3), (60, 4, 2, 5), (45, 2, 3, 2)]):
        specs.append((f"ties_{i}", quantised(rng, n, dim, levels), m, f"integer coordinates in [-{levels}, {levels}]"))
    # every point the same: all distances tie
    specs.append(("all_same", np.tile(unit(rng.standard_normal((1, 5))), (9, 1)), 3, "nine identical points"))
    cases = [case(*s) for s in specs]
    out = os.path.join(HERE, "cases.json")
    with open(out, "w") as f:
        json.dump(cases, f, separators=(",", ":"))
    for c in cases:
        print(c["name"], c["n"], c["dim"], c["min_samples"], "labels", sorted(set(c["labels"])), "brute_agrees", c["brute_agrees"])


if __name__ == "__main__":
    main()
