"""scikit-learn OPTICS on the points bench/optics-vs-sklearn.ts wrote.
   /usr/bin/python3 bench/optics-vs-sklearn.py"""
import os, tempfile, time, warnings
import numpy as np
from sklearn.cluster import OPTICS

warnings.filterwarnings("ignore")
N, C, K = 761, 256, 10
ts_labels = np.fromfile(os.path.join(tempfile.gettempdir(), "hetmm-optics-bench.labels"), dtype=np.int32)
x = np.fromfile(os.path.join(tempfile.gettempdir(), "hetmm-optics-bench.f64"), dtype=np.float64).reshape(N, C)
for name, metric in [("metric='cosine'", "cosine"), ("metric=callable 1 - x.y", lambda a, b: 1.0 - np.dot(a, b))]:
    if os.environ.get("SKIP_CALLABLE") and callable(metric):
        continue
    t0 = time.perf_counter()
    o = OPTICS(min_samples=N // K, metric=metric).fit(x)
    dt = time.perf_counter() - t0
    print(f"sklearn {name}: {dt * 1000:.1f} ms/pixel -> {dt * 5376:.0f} s for 5376 pixels; labels {np.bincount(o.labels_ + 1).tolist()} (first = noise); equal to TS labels: {bool((o.labels_ == ts_labels).all())}")
