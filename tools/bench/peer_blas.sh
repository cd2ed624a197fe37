# Sourced by tools/bench/cpu_vs_peer.sh and run_vs_peer.sh (not run by itself): puts the CPU peer on
# OpenBLAS and checks the BLAS floor before anything is measured (docs/benchmarks.md, "The peers'
# BLAS floor").
#
#   peer_blas_setup DIR THREADS OUT   (needs $here and $py of the caller)
#
# Installs Debian's libopenblas0-pthread with apt-get when it is missing (it is the floor's
# reference, and the peer's BLAS by default), sets peer_ld to DIR (default: its folder,
# /usr/lib/<multiarch>/openblas-pthread) followed by the inherited LD_LIBRARY_PATH, so that the
# libblas.so.3 torch loads is the one in DIR, then runs `cpu_peer.py blas-check --threads THREADS`
# (its JSON into OUT). Returns 0 when the peer's BLAS is at or above the floor, 2 (the reason on
# stderr) when it is below, when no OpenBLAS can be had, or when DIR has no libblas.so.3.
# peer_py ARGS... runs $py with that LD_LIBRARY_PATH (only the peer gets it).

peer_blas_setup() {
  local dir="$1" threads="$2" out="$3" sudo=""
  if ! dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "install ok installed"; then
    echo "== installing libopenblas0-pthread (the peer's BLAS and the floor's reference)" >&2
    [[ "$(id -u)" -ne 0 ]] && sudo=sudo
    if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q libopenblas0-pthread; } >&2; then
      echo "could not install libopenblas0-pthread: without OpenBLAS the peer runs on the reference BLAS and the floor has no reference" >&2
      return 2
    fi
  fi
  if [[ -z "$dir" ]]; then
    dir="$("$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); import blas_probe; print(blas_probe.OPENBLAS_DIR)' "$here/tools/bench")"
  fi
  if [[ ! -e "$dir/libblas.so.3" ]]; then
    echo "--peer-blas $dir: no libblas.so.3 in that folder" >&2
    return 2
  fi
  peer_ld="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "== peer BLAS: $dir/libblas.so.3 first (LD_LIBRARY_PATH); floor check, $threads thread(s)" >&2
  LD_LIBRARY_PATH="$peer_ld" "$py" "$here/tools/peer/cpu_peer.py" blas-check --threads "$threads" > "$out"
}

peer_py() {
  LD_LIBRARY_PATH="$peer_ld" "$py" "$@"
}
