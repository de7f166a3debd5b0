#!/usr/bin/env bash
# Configures and builds hubdns into the directory given as first argument; further
# arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=$1
shift
cmake -S . -B "$build_dir" "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
