#!/usr/bin/env python3
"""The function-length part of tools/check_layering.py on a small tree: a function over 60 lines
fails unless the exemption file lists it (file and function name, with a reason); a line without a
reason is a bad exemption file (exit 2); a stale exemption is reported."""
import os
import subprocess
import sys
import tempfile

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "check_layering.py")


def run(root, exemptions_text):
    path = os.path.join(root, "exemptions.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(exemptions_text)
    p = subprocess.run([sys.executable, CHECK, "--root", root, "--allowlist", os.path.join(root, "none.txt"),
                        "--exemptions", path], capture_output=True, text=True)
    return p.returncode, p.stdout


def body(lines):
    return "".join(f"  x += {i};\n" for i in range(lines))


def main():
    failures = []
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "src", "util"))
        with open(os.path.join(root, "src", "util", "a.cpp"), "w", encoding="utf-8") as f:
            # 2 + 59 = 61 lines: one over; 2 + 58 = 60 lines: at the limit.
            f.write("int Parser::long_one(int x) {\n" + body(59) + "}\n")
            f.write("int short_one(int x) {\n" + body(58) + "}\n")
        cases = [
            ("", 1, "FAIL src/util/a.cpp:1: Parser::long_one is 61 lines"),
            ("src/util/a.cpp Parser::long_one  # flat parser\n", 0, "exempted flat parsers: 1"),
            ("src/util/a.cpp Parser::long_one\n", 2, "expected '<file> <function>  # reason'"),
            ("src/util/a.cpp Parser::long_one  # flat parser\nsrc/util/a.cpp gone  # old\n", 0,
             "exemption no longer needed (remove it): src/util/a.cpp gone"),
        ]
        for text, rc, expected in cases:
            got_rc, out = run(root, text)
            if got_rc != rc or expected not in out or "short_one" in out:
                failures.append(f"exemptions {text!r}: exit {got_rc} (want {rc}), output:\n{out}")
    for f in failures:
        print("FAIL", f)
    print(f"{4 - len(failures)} of 4 cases pass")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
