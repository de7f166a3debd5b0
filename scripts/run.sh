#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, and run hubdns in the foreground.
# Without arguments hubdns runs on its embedded default configuration (DNS on
# 127.0.0.1:5300, health on 127.0.0.1:8053); any arguments are passed to hubdns.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHUBDNS_TESTS=OFF >&2
exec build/daemon/hubdns "$@"
