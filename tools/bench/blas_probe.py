#!/usr/bin/python3
"""Times single-precision products of a BLAS-like library loaded by path, for the matrix-library
comparison of docs/benchmarks.md ("Matrix library: measured"), next to moetrace_cpu_gemm_bench's
oneDNN and Eigen rows. The libraries are Debian's packages (not dependencies of moetrace):

  OpenBLAS  libopenblas0-pthread   /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0   --api cblas
  BLIS      libblis4-openmp        /usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4            --api cblas
  libxsmm   libxsmm-dev (static only; make a loadable library from the archive, with the BLAS it
            falls back to for large products:
              gcc -shared -o /tmp/libxsmm_probe.so -Wl,--whole-archive /usr/lib/libxsmm.a \
                  -Wl,--no-whole-archive -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas -lpthread -ldl -lm)
                                   /tmp/libxsmm_probe.so                                         --api xsmm

Debian's BLIS 0.9.0 picks its kernels by CPU model and takes CPUs it does not know for `generic`
(BLIS_ARCH_DEBUG=1 prints the choice); BLIS_ARCH_TYPE overrides it.

Shapes (float32, row-major, C = X W^T as moetrace's `linear`): the 2048^3 product (the practical
peak the issue defines) and Qwen3-30B-A3B's q_proj (W 4096 x 2048) at 16, 256 and 4096 rows. The
library repacks W on every call (none of these keeps a packed weight between calls through this
interface; oneDNN's packed weights are what moetrace uses). One thread unless --threads.

  tools/bench/blas_probe.py --lib PATH [--api cblas|xsmm] [--name NAME] [--repeat 5] [--threads 1]

Prints one Markdown row per shape: GFLOP/s best and median of --repeat timed calls (after one
warm-up), and the result's max relative difference from numpy's float64 product (a check that the
call computed the right thing).
"""
import argparse
import ctypes
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", required=True, help="path of the shared library")
    ap.add_argument("--api", choices=["cblas", "xsmm"], default="cblas",
                    help="cblas_sgemm (OpenBLAS, BLIS) or libxsmm_sgemm (libxsmm's BLAS-like entry)")
    ap.add_argument("--name", default=None, help="label of the rows (default: the file name)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.repeat < 1 or a.threads < 1:
        sys.exit("blas_probe.py: --repeat and --threads must be >= 1")
    if not os.path.isfile(a.lib):
        sys.exit(f"blas_probe.py: {a.lib}: no such library (install the Debian package named in --help)")
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS"):
        os.environ[v] = str(a.threads)  # before the library loads and reads them
    import numpy as np  # after the thread variables: numpy's own BLAS reads them too

    lib = ctypes.CDLL(a.lib)
    name = a.name or os.path.basename(a.lib)
    f32p = ctypes.POINTER(ctypes.c_float)

    if a.api == "cblas":
        fn = lib.cblas_sgemm
        fn.restype = None
        ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

        def gemm(x, w, c):  # c[m, n] = x[m, k] @ w[n, k]^T
            m, k = x.shape
            n = w.shape[0]
            fn(ROW_MAJOR, NO_TRANS, TRANS, m, n, k, ctypes.c_float(1.0), x.ctypes.data_as(f32p), k,
               w.ctypes.data_as(f32p), k, ctypes.c_float(0.0), c.ctypes.data_as(f32p), n)
    else:
        fn = lib.libxsmm_sgemm
        fn.restype = None
        ip = ctypes.POINTER(ctypes.c_int)  # libxsmm_blasint is int in Debian's LP64 build

        def gemm(x, w, c):
            # Fortran (column-major) convention: row-major C[m, n] is column-major C^T (n x m, ldc n);
            # C^T = W X^T, W row-major [n, k] being column-major k x n (so op 'T'), X^T column-major k x m.
            m, k = x.shape
            n = w.shape[0]
            ta, tb = ctypes.c_char(b"T"), ctypes.c_char(b"N")
            mm, nn, kk = ctypes.c_int(n), ctypes.c_int(m), ctypes.c_int(k)
            alpha, beta = ctypes.c_float(1.0), ctypes.c_float(0.0)
            lda, ldb, ldc = ctypes.c_int(k), ctypes.c_int(k), ctypes.c_int(n)
            fn(ctypes.byref(ta), ctypes.byref(tb), ctypes.byref(mm), ctypes.byref(nn), ctypes.byref(kk),
               ctypes.byref(alpha), w.ctypes.data_as(f32p), ctypes.byref(lda), x.ctypes.data_as(f32p),
               ctypes.byref(ldb), ctypes.byref(beta), c.ctypes.data_as(f32p), ctypes.byref(ldc))

    rng = np.random.default_rng(0)
    shapes = [("2048^3", 2048, 2048, 2048)] + [(f"linear 4096x2048, {r} rows", r, 4096, 2048) for r in (16, 256, 4096)]
    print(f"| library ({a.threads} thread{'s' if a.threads > 1 else ''}) | product | GFLOP/s best | median | max rel. diff |")
    print("|---|---|---:|---:|---:|")
    for label, m, n, k in shapes:
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        c = np.zeros((m, n), dtype=np.float32)
        gemm(x, w, c)  # warm-up
        ref = x.astype(np.float64) @ w.astype(np.float64).T
        err = float(np.abs(c - ref).max() / np.abs(ref).max())
        reps = max(a.repeat, 1)
        inner = max(1, int(2e9 // (2 * m * n * k)))  # ~2 GFLOP a timed sample
        rates = []
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(inner):
                gemm(x, w, c)
            rates.append(2.0 * m * n * k * inner / (time.perf_counter() - t) / 1e9)
        print(f"| {name} | {label} | {max(rates):.1f} | {statistics.median(rates):.1f} | {err:.1e} |")
        if err > 1e-4:
            sys.exit(f"blas_probe.py: {name} computed a wrong product for {label} (max rel. diff {err:.1e})")


if __name__ == "__main__":
    main()
