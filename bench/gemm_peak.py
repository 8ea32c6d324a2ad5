"""The machine's float32 GEMM peak: numpy's matmul on OpenBLAS with every core
(OPENBLAS_NUM_THREADS, set by scripts/bench-cpu.sh), the physical reference for our step."""
import time

import numpy as np

n = 2048
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
a @ b  # warm-up: thread pool and page faults
times = []
for _ in range(10):
    t0 = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - t0)
times.sort()
gflops = [2 * n**3 / t / 1e9 for t in (times[len(times) // 2], times[0])]
print(f"numpy sgemm {n}x{n}x{n}: median {gflops[0]:.0f} GFLOP/s, best {gflops[1]:.0f} GFLOP/s")
