#!/usr/bin/env bash
# Quick start, command 2: install what is missing, then build and run the whole test
# suite twice: the normal build, and the same tests under AddressSanitizer +
# UndefinedBehaviorSanitizer. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --test

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

status=0
for variant in normal sanitize; do
  if [[ $variant == normal ]]; then
    dir=build
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
  else
    dir=build-asan
    flags=(-DCMAKE_BUILD_TYPE=Debug -DHUBDNS_SANITIZE=ON)
  fi
  echo "== hubdns tests: $variant build ($dir)"
  scripts/build.sh "$dir" "${flags[@]}" -DHUBDNS_TESTS=ON
  if ! (cd "$dir" && ctest --output-on-failure --timeout 300 -j 2); then
    status=1
  fi
done

if ((status == 0)); then
  echo "hubdns: all tests passed (normal and ASan+UBSan builds)"
else
  echo "hubdns: TESTS FAILED" >&2
fi
exit $status
