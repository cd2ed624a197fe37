#!/usr/bin/python3
"""Times single-precision products of a BLAS-like library loaded by path, for the matrix-library
comparison of docs/benchmarks.md ("Matrix library: measured"), next to moetrace_cpu_gemm_bench's
oneDNN and Eigen rows, and holds the peers' BLAS floor (docs/benchmarks.md, "The peers' BLAS floor").
The libraries are Debian's packages (not dependencies of moetrace):

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
peak the issue defines), the peers' floor product 512 x 2048 x 2048, and Qwen3-30B-A3B's q_proj
(W 4096 x 2048) at 16, 256 and 4096 rows. The library repacks W on every call (none of these keeps
a packed weight between calls through this interface; oneDNN's packed weights are what moetrace
uses). One thread unless --threads.

  tools/bench/blas_probe.py --lib PATH [--api cblas|xsmm] [--name NAME] [--repeat 5] [--threads 1]
  tools/bench/blas_probe.py --floor-reference [--lib PATH] [--threads 1]

Prints one Markdown row per shape: GFLOP/s best and median of --repeat timed calls (after one
warm-up), and the result's max relative difference from numpy's float64 product (a check that the
call computed the right thing).

--floor-reference measures only the 512 x 2048 x 2048 product with OpenBLAS's cblas_sgemm (--lib,
default Debian's libopenblas0-pthread) on this CPU's best OpenBLAS core (OPENBLAS_CORETYPE
Cooperlake where the CPU has AVX512_BF16, SkylakeX where it has AVX-512F, else the inherited value)
and prints one JSON object: the reference the peers (tools/peer/*.py) hold their own BLAS against.
Exit 2 when the library is missing or computes a wrong product.

The peers' floor: a peer whose own 512 x 2048 x 2048 product (torch.matmul, its threads) reaches
less than FLOOR_FRACTION (one half) of that reference refuses to report (floor_verdict): a peer on
Debian's reference BLAS (libblas3, ~50x slower) would otherwise show moetrace a false lead.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time

FLOOR_SHAPE = (512, 2048, 2048)  # m, n, k of the peers' BLAS check: C[m, n] = X[m, k] W[n, k]^T
FLOOR_FRACTION = 0.5  # a CPU peer must reach this share of OpenBLAS's own kernel on FLOOR_SHAPE
# A GPU peer's floor: this share of the device's dense bf16 peak (tensor cores, no sparsity), in
# TFLOP/s by device name (the first key contained in torch.cuda.get_device_name, case-insensitive).
GPU_FLOOR_FRACTION = 0.05
GPU_BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0,
                        "L40S": 362.0}


def multiarch():
    """Debian's multiarch triplet (x86_64-linux-gnu), where the BLAS alternatives live."""
    return sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"


OPENBLAS_DIR = f"/usr/lib/{multiarch()}/openblas-pthread"  # libopenblas0-pthread
OPENBLAS_LIB = os.path.join(OPENBLAS_DIR, "libopenblas.so.0")
REFERENCE_BLAS_DIR = f"/usr/lib/{multiarch()}/blas"  # libblas3, Netlib's reference BLAS


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def best_openblas_coretype(flags=None):
    """The OpenBLAS core for this CPU that Debian's 0.3.21 may not detect by itself (None: keep the
    environment's choice)."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_bf16" in flags:
        return "Cooperlake"
    if "avx512f" in flags:
        return "SkylakeX"
    return None


def floor_verdict(peer_gflops, reference_gflops, fraction=FLOOR_FRACTION):
    """(accepted, floor GFLOP/s, reason): the peer's rate against fraction x the reference's."""
    if not reference_gflops or reference_gflops <= 0:
        return False, None, "no OpenBLAS reference was measured, so the floor is unknown"
    floor = fraction * reference_gflops
    share = peer_gflops / reference_gflops
    if peer_gflops < floor:
        return False, floor, (f"the peer's BLAS reaches {peer_gflops:.1f} GFLOP/s, {share:.1%} of OpenBLAS's own "
                              f"kernel ({reference_gflops:.1f} GFLOP/s), below the floor of {floor:.1f} GFLOP/s "
                              f"({fraction:g} x OpenBLAS)")
    return True, floor, (f"the peer's BLAS reaches {peer_gflops:.1f} GFLOP/s, {share:.1%} of OpenBLAS's own "
                         f"kernel ({reference_gflops:.1f} GFLOP/s), at or above the floor of {floor:.1f} GFLOP/s")


def gpu_peak_tflops(device_name):
    name = device_name.lower()
    for key, peak in GPU_BF16_PEAK_TFLOPS.items():
        if key.lower() in name:
            return peak
    return None


def gpu_floor_verdict(device_name, tflops, fraction=GPU_FLOOR_FRACTION):
    """(accepted, floor TFLOP/s or None, reason) for a GPU peer's bf16 product on device_name."""
    peak = gpu_peak_tflops(device_name)
    if peak is None:
        return True, None, (f"the peer's bf16 product reaches {tflops:.1f} TFLOP/s on {device_name}; no peak is "
                            f"known for this device, so no floor applies (measured and printed only)")
    floor = fraction * peak
    verdict = "below" if tflops < floor else "at or above"
    return tflops >= floor, floor, (f"the peer's bf16 product reaches {tflops:.1f} TFLOP/s on {device_name}, "
                                    f"{verdict} the floor of {floor:.1f} TFLOP/s ({fraction:g} x the dense bf16 "
                                    f"peak of {peak:.0f})")


def time_rate(call, flop, repeat=5, budget_s=3.0, sample_s=0.2):
    """GFLOP/s samples of call() (flop each) after one warm-up: up to `repeat` samples of at least
    sample_s each, stopping early once budget_s is spent (a slow BLAS gets fewer samples)."""
    call()
    rates, spent = [], 0.0
    while len(rates) < repeat and (not rates or spent < budget_s):
        n, t = 0, time.perf_counter()
        while True:
            call()
            n += 1
            dt = time.perf_counter() - t
            if dt >= sample_s:
                break
        rates.append(flop * n / dt / 1e9)
        spent += dt
    return rates


def _maps_entries(maps_text):
    """(start, end, path) of the file mappings in the text of /proc/PID/maps."""
    for line in maps_text.splitlines():
        f = line.split()
        if len(f) >= 6 and f[5].startswith("/"):
            start, end = (int(v, 16) for v in f[0].split("-"))
            yield start, end, f[5]


def mapped_blas(maps_text):
    """Paths of the BLAS-like libraries mapped in a process (text of /proc/PID/maps), in map order."""
    out = []
    for _, _, path in _maps_entries(maps_text):
        if os.path.basename(path).startswith(("libblas.so", "libopenblas", "libblis", "libmkl_rt", "libcblas.so")):
            out.append(path) if path not in out else None
    return out


def mapped_library(maps_text, prefix):
    """Path of the first mapped file whose name starts with prefix (None if none)."""
    return next((p for _, _, p in _maps_entries(maps_text) if os.path.basename(p).startswith(prefix)), None)


def library_at(address, maps_text):
    """Path of the mapped file that holds address (None if none)."""
    return next((p for start, end, p in _maps_entries(maps_text) if start <= address < end), None)


def sgemm_provider(caller):
    """The library whose sgemm_ the loaded library `caller` (a path) calls: the symbol as looked up
    from caller's own handle (its dependency order, as the loader bound it), located in this
    process's /proc/self/maps. None when caller has no sgemm_ in reach."""
    try:
        fn = ctypes.CDLL(caller).sgemm_
    except (OSError, AttributeError):
        return None
    with open("/proc/self/maps") as fh:
        return library_at(ctypes.cast(fn, ctypes.c_void_p).value, fh.read())


def openblas_info(path):
    """{core, threads, config} of an OpenBLAS library (dlopen of an already loaded path returns the
    loaded instance), or None when the library is no OpenBLAS."""
    try:
        lib = ctypes.CDLL(path)
        core, config = lib.openblas_get_corename, lib.openblas_get_config
    except (OSError, AttributeError):
        return None
    core.restype = config.restype = ctypes.c_char_p
    return dict(core=core().decode(), threads=int(lib.openblas_get_num_threads()), config=config().decode().strip())


def cblas_gemm(lib):
    """gemm(x, w, c): c[m, n] = x[m, k] @ w[n, k]^T through cblas_sgemm (numpy float32 arrays)."""
    fn = lib.cblas_sgemm
    fn.restype = None
    f32p = ctypes.POINTER(ctypes.c_float)
    ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

    def gemm(x, w, c):
        m, k = x.shape
        n = w.shape[0]
        fn(ROW_MAJOR, NO_TRANS, TRANS, m, n, k, ctypes.c_float(1.0), x.ctypes.data_as(f32p), k,
           w.ctypes.data_as(f32p), k, ctypes.c_float(0.0), c.ctypes.data_as(f32p), n)
    return gemm


def xsmm_gemm(lib):
    """gemm(x, w, c) through libxsmm_sgemm (libxsmm's BLAS-like entry)."""
    fn = lib.libxsmm_sgemm
    fn.restype = None
    f32p = ctypes.POINTER(ctypes.c_float)

    def gemm(x, w, c):
        # Fortran (column-major) convention: row-major C[m, n] is column-major C^T (n x m, ldc n);
        # C^T = W X^T, W row-major [n, k] being column-major k x n (so op 'T'), X^T column-major k x m.
        m, k = x.shape
        n = w.shape[0]
        ta, tb = ctypes.c_char(b"T"), ctypes.c_char(b"N")
        mm, nn, kk = ctypes.c_int(n), ctypes.c_int(m), ctypes.c_int(k)  # libxsmm_blasint: int (LP64)
        alpha, beta = ctypes.c_float(1.0), ctypes.c_float(0.0)
        lda, ldb, ldc = ctypes.c_int(k), ctypes.c_int(k), ctypes.c_int(n)
        fn(ctypes.byref(ta), ctypes.byref(tb), ctypes.byref(mm), ctypes.byref(nn), ctypes.byref(kk),
           ctypes.byref(alpha), w.ctypes.data_as(f32p), ctypes.byref(lda), x.ctypes.data_as(f32p),
           ctypes.byref(ldb), ctypes.byref(beta), c.ctypes.data_as(f32p), ctypes.byref(ldc))
    return gemm


def measure(gemm, m, n, k, repeat, budget_s=3.0):
    """(GFLOP/s samples, max relative difference from numpy's float64 product) of gemm on random data."""
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    c = np.zeros((m, n), dtype=np.float32)
    gemm(x, w, c)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    err = float(np.abs(c - ref).max() / np.abs(ref).max())
    return time_rate(lambda: gemm(x, w, c), 2.0 * m * n * k, repeat, budget_s), err


def reference_in_subprocess(threads, lib=OPENBLAS_LIB, timeout_s=300):
    """OpenBLAS's own kernel on FLOOR_SHAPE, measured by this script in a fresh process (so that
    the caller's BLAS, core type and thread settings do not leak into it): the JSON of
    --floor-reference, or {"error": reason}."""
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[v] = str(threads)
    env.pop("LD_PRELOAD", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--floor-reference", "--lib", lib, "--threads", str(threads)]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return dict(error=f"the OpenBLAS reference ({lib}) took over {timeout_s} s")
    if r.returncode != 0:
        return dict(error=(r.stderr.strip() or f"blas_probe.py --floor-reference exited {r.returncode}"))
    return json.loads(r.stdout)


def floor_reference(a):
    if not os.path.isfile(a.lib):
        sys.stderr.write(f"blas_probe.py: {a.lib}: no such library, so no OpenBLAS reference for the floor "
                         f"(apt-get install libopenblas0-pthread)\n")
        sys.exit(2)
    core = best_openblas_coretype()
    if core:
        os.environ["OPENBLAS_CORETYPE"] = core  # before the library loads and reads it
    lib = ctypes.CDLL(a.lib)
    info = openblas_info(a.lib) or {}
    m, n, k = FLOOR_SHAPE
    rates, err = measure(cblas_gemm(lib), m, n, k, a.repeat)
    if err > 1e-4:
        sys.stderr.write(f"blas_probe.py: {a.lib} computed a wrong {m}x{n}x{k} product (max rel. diff {err:.1e})\n")
        sys.exit(2)
    print(json.dumps(dict(lib=os.path.realpath(a.lib), shape=list(FLOOR_SHAPE), threads=a.threads,
                          openblas_threads=info.get("threads"), core=info.get("core"),
                          openblas_coretype=os.environ.get("OPENBLAS_CORETYPE"), gflops_best=max(rates),
                          gflops_median=statistics.median(rates), samples=len(rates))))


def table(a):
    if not os.path.isfile(a.lib):
        sys.exit(f"blas_probe.py: {a.lib}: no such library (install the Debian package named in --help)")
    lib = ctypes.CDLL(a.lib)
    name = a.name or os.path.basename(a.lib)
    gemm = cblas_gemm(lib) if a.api == "cblas" else xsmm_gemm(lib)
    m, n, k = FLOOR_SHAPE
    shapes = [("2048^3", 2048, 2048, 2048), (f"{m}x{n}x{k} (peers' floor)", m, n, k)]
    shapes += [(f"linear 4096x2048, {r} rows", r, 4096, 2048) for r in (16, 256, 4096)]
    print(f"| library ({a.threads} thread{'s' if a.threads > 1 else ''}) | product | GFLOP/s best | median | max rel. diff |")
    print("|---|---|---:|---:|---:|")
    for label, m, n, k in shapes:
        rates, err = measure(gemm, m, n, k, a.repeat, budget_s=1e9)
        print(f"| {name} | {label} | {max(rates):.1f} | {statistics.median(rates):.1f} | {err:.1e} |")
        if err > 1e-4:
            sys.exit(f"blas_probe.py: {name} computed a wrong product for {label} (max rel. diff {err:.1e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", help=f"path of the shared library (--floor-reference: default {OPENBLAS_LIB})")
    ap.add_argument("--api", choices=["cblas", "xsmm"], default="cblas",
                    help="cblas_sgemm (OpenBLAS, BLIS) or libxsmm_sgemm (libxsmm's BLAS-like entry)")
    ap.add_argument("--name", default=None, help="label of the rows (default: the file name)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--floor-reference", action="store_true",
                    help="print OpenBLAS's rate on the peers' floor product as JSON (see above)")
    a = ap.parse_args()
    if a.repeat < 1 or a.threads < 1:
        sys.exit("blas_probe.py: --repeat and --threads must be >= 1")
    if a.lib is None:
        if not a.floor_reference:
            ap.error("--lib is required")
        a.lib = OPENBLAS_LIB
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS"):
        os.environ[v] = str(a.threads)  # before the library loads and reads them
    floor_reference(a) if a.floor_reference else table(a)


if __name__ == "__main__":
    main()
