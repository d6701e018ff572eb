"""The one timing rule of the benchmark scripts: warm up, then the median of `reps` runs."""

from __future__ import annotations

import statistics
import time


def median_time(fn, reps: int, warmup: int = 1) -> float:
    """Median wall time of `fn()` in seconds over `reps` runs, after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
