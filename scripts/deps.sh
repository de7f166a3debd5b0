#!/usr/bin/env bash
# Installs the Debian 12 packages hubdns needs to build (and, with --test, to run its
# test suite), but only those that are missing: apt is not touched when all are present.
set -euo pipefail

build_pkgs=(g++ cmake make pkg-config libuv1-dev libcurl4-openssl-dev libtomlplusplus-dev)
test_pkgs=(doctest-dev dnsutils knot-dnsutils curl python3 iproute2
  # deployment checks: template assertions, cloud-init schema, unit verification, packaging
  jq cloud-init shellcheck systemd python3-yaml dpkg-dev groff-base git
  # overload test (and the soak): the real load generator
  dnsperf)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "hubdns: installing missing Debian packages: ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
