#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for a bounded time
# (default 60 s, first argument) on its seed corpus in tests/fuzz/corpus/<target>/. New
# interesting inputs go to build-fuzz/corpus/<target>/; crashers to build-fuzz/crashes/.
# Keep a crasher by copying it into the seed corpus: the test suite replays those.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
scripts/deps.sh --test
if ! command -v clang++ >/dev/null; then
  apt-get install -y -qq clang >/dev/null
fi
scripts/build.sh build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DHUBDNS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
mkdir -p build-fuzz/crashes
for target in build-fuzz/tests/fuzz/fuzz_*; do
  name=$(basename "$target")
  corpus=${name#fuzz_}
  mkdir -p "build-fuzz/corpus/$corpus"
  extra=()
  [[ $corpus == config ]] && extra=(conf)  # the example configurations are seeds too
  echo "== $name for ${seconds}s"
  "$target" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/"$name"- \
    "build-fuzz/corpus/$corpus" "tests/fuzz/corpus/$corpus" "${extra[@]}" 2>&1 | grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE|ERROR|SUMMARY" || true
done
ls build-fuzz/crashes
