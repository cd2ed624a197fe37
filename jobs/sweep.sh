#!/usr/bin/env bash
# One protocol run of CONFIG into OUT; resumes OUT when it exists, so a requeued job continues.
# Usage: jobs/sweep.sh CONFIG.toml RESULTS.h5 [extra moetrace run options]
set -euo pipefail
config="$1"; out="$2"; shift 2
moetrace="${MOETRACE:-moetrace}"
resume=()
[ -e "$out" ] && resume=(--resume)
exec "$moetrace" run "$config" --out "$out" "${resume[@]}" "$@"
