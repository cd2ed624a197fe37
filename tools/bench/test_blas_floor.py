#!/usr/bin/python3
"""ctest `blas_floor`: the peers' BLAS floor decisions of tools/bench/blas_probe.py on fixed, made-up
measurements (no torch, no BLAS, no timing), and the reading of /proc/PID/maps that names the library
whose sgemm_ torch calls. The numbers are the issue's: a peer on Debian's reference BLAS (~2 GFLOP/s)
against OpenBLAS's kernel (~80-185 GFLOP/s) must be refused; one on OpenBLAS must pass."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blas_probe  # noqa: E402


class CpuFloor(unittest.TestCase):
    def test_reference_blas_is_refused_with_both_rates_in_the_reason(self):
        ok, floor, reason = blas_probe.floor_verdict(1.6, 81.6)
        self.assertFalse(ok)
        self.assertAlmostEqual(floor, 40.8)
        for text in ("1.6 GFLOP/s", "81.6 GFLOP/s", "40.8 GFLOP/s", "below the floor"):
            self.assertIn(text, reason)

    def test_openblas_peer_passes(self):
        ok, floor, _ = blas_probe.floor_verdict(172.3, 170.6)
        self.assertTrue(ok)
        self.assertAlmostEqual(floor, 85.3)

    def test_the_floor_is_half_the_reference(self):
        self.assertTrue(blas_probe.floor_verdict(50.0, 100.0)[0])
        self.assertFalse(blas_probe.floor_verdict(49.9, 100.0)[0])

    def test_a_stated_fraction_moves_the_floor(self):
        self.assertFalse(blas_probe.floor_verdict(60.0, 100.0, fraction=0.8)[0])
        self.assertTrue(blas_probe.floor_verdict(80.0, 100.0, fraction=0.8)[0])

    def test_no_reference_means_no_report(self):
        for ref in (None, 0.0):
            ok, floor, reason = blas_probe.floor_verdict(170.0, ref)
            self.assertFalse(ok)
            self.assertIsNone(floor)
            self.assertIn("no OpenBLAS reference", reason)


class GpuFloor(unittest.TestCase):
    def test_h100_floor_is_a_twentieth_of_the_bf16_peak(self):
        ok, floor, _ = blas_probe.gpu_floor_verdict("NVIDIA H100 80GB HBM3", 200.0)
        self.assertTrue(ok)
        self.assertAlmostEqual(floor, 49.45)
        self.assertFalse(blas_probe.gpu_floor_verdict("NVIDIA H100 80GB HBM3", 10.0)[0])

    def test_h100_pcie_has_its_own_peak(self):
        self.assertAlmostEqual(blas_probe.gpu_floor_verdict("NVIDIA H100 PCIe", 40.0)[1], 37.8)

    def test_h200(self):
        self.assertFalse(blas_probe.gpu_floor_verdict("NVIDIA H200", 30.0)[0])

    def test_unknown_device_is_measured_without_a_floor(self):
        ok, floor, reason = blas_probe.gpu_floor_verdict("Some Future GPU", 1.0)
        self.assertTrue(ok)
        self.assertIsNone(floor)
        self.assertIn("no peak is known", reason)


MAPS = """\
55d0a0000000-55d0a0001000 r--p 00000000 08:01 100 /usr/bin/python3.11
55d0a1000000-55d0a1200000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00010000 08:01 200 /usr/lib/python3/dist-packages/torch/lib/libtorch_cpu.so
7f0000100000-7f0000180000 r-xp 00004000 08:01 300 /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0
7f0000180000-7f0000190000 rw-p 00000000 00:00 0
7f0000200000-7f0000800000 r-xp 00020000 08:01 400 /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so
7f0000800000-7f0000900000 r--p 00000000 08:01 400 /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so
"""


class Maps(unittest.TestCase):
    def test_blas_libraries_in_map_order_once_each(self):
        self.assertEqual(blas_probe.mapped_blas(MAPS), [
            "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0",
            "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so"])

    def test_an_address_names_its_library(self):
        # torch's sgemm_ resolved into the reference BLAS although OpenBLAS is mapped too (for LAPACK)
        self.assertEqual(blas_probe.library_at(0x7f0000100040, MAPS), "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0")
        self.assertIsNone(blas_probe.library_at(0x7f0000180010, MAPS))  # anonymous mapping
        self.assertIsNone(blas_probe.library_at(0x1000, MAPS))

    def test_the_torch_library_is_found_by_name(self):
        self.assertEqual(blas_probe.mapped_library(MAPS, "libtorch_cpu"),
                         "/usr/lib/python3/dist-packages/torch/lib/libtorch_cpu.so")
        self.assertIsNone(blas_probe.mapped_library(MAPS, "libmkl"))


class CoreType(unittest.TestCase):
    def test_best_core_from_cpu_flags(self):
        self.assertEqual(blas_probe.best_openblas_coretype({"avx512f", "avx512_bf16"}), "Cooperlake")
        self.assertEqual(blas_probe.best_openblas_coretype({"avx2", "avx512f"}), "SkylakeX")
        self.assertIsNone(blas_probe.best_openblas_coretype({"avx2", "fma"}))


if __name__ == "__main__":
    unittest.main(verbosity=1)
