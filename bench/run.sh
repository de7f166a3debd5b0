#!/usr/bin/env bash
# hubdns vs dnsdist, side by side, in one run: bench/run.sh
#
# Installs what is missing (Debian packages: dnsperf, dnsdist, knot, linux-perf, strace,
# and hubdns's build dependencies), builds hubdns in Release into build-bench/, starts a
# local authoritative upstream (knotd, zone bench.test), hubdns and dnsdist (both one
# worker, no cache, forwarding to that upstream), then runs dnsperf against each in
# alternating rounds and prints the table with the hubdns/dnsdist ratios. See
# bench/README.md for what each number means and the knobs (BENCH_* environment variables).
#
# Every address used is 127.0.0.1: nothing leaves the machine. Every wait is bounded in
# time, and everything this script starts is stopped on exit, on failure too.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench

# ---- knobs ----------------------------------------------------------------------------
BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}
WORK=${BENCH_WORK:-$BUILD_DIR/bench-run}
HUBDNS=${BENCH_HUBDNS:-}                     # a prebuilt hubdns binary: skip the build
REF=${BENCH_REF:-}                           # build this commit (git archive) instead of the work tree
ROUNDS=${BENCH_ROUNDS:-3}                    # measured rounds per forwarder
SAT_SECONDS=${BENCH_SAT_SECONDS:-10}         # dnsperf -l of a saturation round
RATE=${BENCH_RATE:-10000}                    # fixed rate (q/s) of the latency rounds
RATE_SECONDS=${BENCH_RATE_SECONDS:-10}       # dnsperf -l of a latency round
SYS_SECONDS=${BENCH_SYS_SECONDS:-5}          # dnsperf -l of a syscall-counting round
STRACE_RATE=${BENCH_STRACE_RATE:-5000}       # rate of the strace fallback round (BENCH_SYSCALLS=strace forces it)
OUTSTANDING=${BENCH_OUTSTANDING:-200}        # dnsperf -q
CLIENTS=${BENCH_CLIENTS:-8}                  # dnsperf -c
FWD_CPU=${BENCH_FWD_CPU:-0}                  # hubdns and dnsdist run here
LOAD_CPU=${BENCH_LOAD_CPU:-1}                # dnsperf, knotd and the probe client run here
NICE=${BENCH_NICE:--19}                      # nice level of everything measured (0: none)
# Everything measured runs in a session of its own (setsid), whose scheduler autogroup gets
# the same nice level: with autogroups (sched_autogroup_enabled=1), a plain nice only ranks
# processes inside one session, and a compile in another session would still take half of
# a busy CPU. setsid does not fork here (the caller is never a process group leader), so
# the pid started is the pid of the program.
# shellcheck disable=SC2016 # $1, $n and $@ belong to the inner sh
PRIO=(setsid -w sh -c 'n=$1; shift; echo "$n" >/proc/self/autogroup 2>/dev/null; exec nice -n "$n" "$@"' prio "$NICE")
UP_PORT=${BENCH_UP_PORT:-25353}
HUB_PORT=${BENCH_HUB_PORT:-25301}
HEALTH_PORT=${BENCH_HEALTH_PORT:-28053}
DD_PORT=${BENCH_DD_PORT:-25302}
FLOOR_PORT=${BENCH_FLOOR_PORT:-25303}         # bench/floor_relay.c, the yardstick (see below)
HTTP_FLOOR_PORT=${BENCH_HTTP_FLOOR_PORT:-28054} # bench/http_floor.c, the /readyz yardstick
READYZ_COUNT=${BENCH_READYZ_COUNT:-1000}     # GET /readyz per probing round
HUBC_PORT=${BENCH_HUBC_PORT:-25311}          # hubdns with its cache on (cache rounds)
HUBC_HEALTH_PORT=${BENCH_HUBC_HEALTH_PORT:-28055}
DDC_PORT=${BENCH_DDC_PORT:-25312}            # dnsdist with its packet cache
ECHO_PORT=${BENCH_ECHO_PORT:-25313}          # floor_relay in echo mode: the cache-hit floor
ZIPF_RATE=${BENCH_ZIPF_RATE:-20000}          # client rate of the upstream-rate round
ZIPF_SECONDS=${BENCH_ZIPF_SECONDS:-20}
QFILE=queries.txt                            # the dnsperf query file of the current phase
ADDR=127.0.0.1                               # loopback only, by design: not a knob

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

# ---- cleanup: everything started here is stopped on exit ------------------------------
PIDS=()
NAMES=()
POLICY_RC_CREATED=0
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  set +e
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        log "${NAMES[i]} (pid $pid) did not stop on SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null
      fi
    fi
    wait "$pid" 2>/dev/null
  done
  if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOGFILE CMD...: runs CMD in the background, remembers its pid in $STARTED
start() {
  local name=$1 logf=$2
  shift 2
  "$@" >"$logf" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
  NAMES+=("$name")
}

comm_is() { # PID NAME: the program running as PID (once its wrappers have exec'd) is NAME
  local i c
  for i in $(seq 50); do
    c=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
    [[ $c == "$2" ]] && return 0
    sleep 0.1
  done
  return 1
}

forget() { # PID: drop a process that has been waited for from the cleanup list
  local i
  for i in "${!PIDS[@]}"; do
    if [[ ${PIDS[i]} == "$1" ]]; then unset 'PIDS[i]' 'NAMES[i]'; fi
  done
  PIDS=("${PIDS[@]}")
  NAMES=("${NAMES[@]}")
}

alive_or_die() { # NAME PID LOGFILE
  if ! kill -0 "$2" 2>/dev/null; then
    tail -n 20 "$3" >&2 || true
    die "$1 is not running (log above: $3)"
  fi
}

# ---- machine checks and packages ------------------------------------------------------
[[ $(uname -s) == Linux ]] || die "Linux only"
ncpu=$(nproc --all)
((ncpu >= 2)) || die "needs at least 2 CPUs (forwarder on CPU $FWD_CPU, load on CPU $LOAD_CPU); this machine has $ncpu"
[[ $(id -u) -eq 0 ]] || die "run as root (packages are installed, perf attaches to other processes)"

bench_pkgs=(dnsperf dnsdist knot linux-perf strace python3 iproute2 util-linux procps)
missing=()
for pkg in "${bench_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing missing Debian packages: ${missing[*]}"
  # Keep the packages' own services (dnsdist, knot) from starting: this benchmark runs its
  # own instances, and a stock dnsdist would poll for security updates over real DNS.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  timeout 900 apt-get update -qq || die "apt-get update failed"
  timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
  if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
fi
for tool in dnsperf dnsdist knotd taskset python3 ss; do
  command -v "$tool" >/dev/null || die "'$tool' not found after installing packages"
done

# ---- build hubdns (Release) -----------------------------------------------------------
git_short() { git -C "$ROOT" rev-parse --short "$1" 2>/dev/null || echo unknown; }
if [[ -n $HUBDNS ]]; then
  HUBDNS_DESC="prebuilt binary $HUBDNS"
elif [[ -n $REF ]]; then
  # A committed version, exported read-only from git: the work tree is not used.
  rev=$(git -C "$ROOT" rev-parse --verify --short "$REF^{commit}" 2>/dev/null) || die "BENCH_REF=$REF is not a commit of $ROOT"
  src=$BUILD_DIR/ref-$rev-src
  log "building hubdns (Release) from commit $rev ($REF) in $BUILD_DIR/ref-$rev-build"
  rm -rf "$src"
  mkdir -p "$src"
  git -C "$ROOT" archive "$rev" | tar -x -C "$src" || die "git archive $rev failed"
  "$src/scripts/deps.sh" >&2 || die "scripts/deps.sh failed"
  timeout 1800 "$src/scripts/build.sh" "$BUILD_DIR/ref-$rev-build" -DCMAKE_BUILD_TYPE=Release \
    -DHUBDNS_TESTS=OFF -DHUBDNS_WERROR=OFF >&2 || die "building hubdns (commit $rev) failed"
  HUBDNS=$BUILD_DIR/ref-$rev-build/daemon/hubdns
  HUBDNS_DESC="commit $rev ($REF), Release build"
else
  log "building hubdns (Release) from the work tree in $BUILD_DIR"
  "$ROOT/scripts/deps.sh" >&2 || die "scripts/deps.sh failed"
  timeout 1800 "$ROOT/scripts/build.sh" "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
    -DHUBDNS_TESTS=OFF -DHUBDNS_WERROR=OFF >&2 ||
    die "building hubdns failed (to benchmark a committed version instead: BENCH_REF=HEAD bench/run.sh)"
  HUBDNS=$BUILD_DIR/daemon/hubdns
  HUBDNS_DESC="work tree at commit $(git_short HEAD)"
  if [[ -n $(git -C "$ROOT" status --porcelain -- . ':!bench' ':!docs' 2>/dev/null | head -n 1) ]]; then
    HUBDNS_DESC+=" with uncommitted changes"
  fi
  HUBDNS_DESC+=", Release build"
fi
[[ -x $HUBDNS ]] || die "no hubdns binary at $HUBDNS"

# The floor relay: the kernel's own cost of relaying a query (four datagrams) with next to
# no user-space work; no forwarder can go below it (bench/floor_relay.c says why).
mkdir -p "$BUILD_DIR"
FLOOR=$BUILD_DIR/floor_relay
cc -O2 -Wall -Wextra -o "$FLOOR" "$BENCH/floor_relay.c" || die "building bench/floor_relay.c failed"
# The /readyz probe client and its yardstick, a minimal HTTP responder (see their headers).
RZ=$BUILD_DIR/readyz_probe
HTTP_FLOOR=$BUILD_DIR/http_floor
cc -O2 -Wall -Wextra -o "$RZ" "$BENCH/readyz_probe.c" || die "building bench/readyz_probe.c failed"
cc -O2 -Wall -Wextra -o "$HTTP_FLOOR" "$BENCH/http_floor.c" || die "building bench/http_floor.c failed"
# The probe client runs at a real-time priority where allowed: a load balancer's probe comes
# from the network, so the client's own wake-up delays on the busy load CPU must not count.
if chrt -f 10 true 2>/dev/null; then RZ_RUN=(chrt -f 10 taskset -c "$LOAD_CPU" "$RZ"); RZ_PRIO="SCHED_FIFO 10"
else RZ_RUN=("${PRIO[@]}" taskset -c "$LOAD_CPU" "$RZ"); RZ_PRIO="nice $NICE (chrt -f not permitted here)"; fi

# ---- work dir, data, configurations ---------------------------------------------------
rm -rf "$WORK"
mkdir -p "$WORK/knot" "$WORK/lat"
python3 "$BENCH/gen_data.py" "$WORK" || die "generating the zone and query files failed"
RESULTS=$WORK/results.txt
: >"$RESULTS"

for p in "$UP_PORT" "$HUB_PORT" "$HEALTH_PORT" "$DD_PORT" "$FLOOR_PORT" "$HTTP_FLOOR_PORT" "$HUBC_PORT" "$HUBC_HEALTH_PORT" "$DDC_PORT" "$ECHO_PORT"; do
  if [[ -n $(ss -Hlnu "sport = :$p") || -n $(ss -Hlnt "sport = :$p") ]]; then
    die "port $p is already in use on this machine (set BENCH_*_PORT to another port)"
  fi
done

cat >"$WORK/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: $ADDR@$UP_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$WORK/knot"
log:
  - target: stderr
    any: warning
zone:
  - domain: bench.test
    file: "$WORK/bench.test.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
EOF

default_cfg=$("$HUBDNS" --print-default-config) || die "$HUBDNS --print-default-config failed"
{
  echo "# hubdns benchmark configuration (written by bench/run.sh)"
  echo "[server]"
  echo "listen = [\"$ADDR:$HUB_PORT\"]"
  echo "workers = 1"
  echo "allow = [\"127.0.0.0/8\"]"
  echo "max_inflight = 100000"
  echo "[health]"
  echo "listen = [\"$ADDR:$HEALTH_PORT\"]"
  if grep -q '^\[cache\]' <<<"$default_cfg"; then
    echo "[cache]"
    echo "enabled = false"
  fi
  if grep -q '^drain_grace' <<<"$default_cfg"; then
    echo "[lifecycle]"
    echo "drain_grace = \"0s\""
  fi
  echo "[[forward]]"
  echo "zone = \".\""
  echo "upstreams = [\"$ADDR:$UP_PORT\"]"
  echo "policy = \"sequential\""
  echo "max_outstanding = 65535"
  echo "probe = { name = \"bench.test\", type = \"SOA\" }"
  if grep -q '^cache = ' <<<"$default_cfg"; then echo "cache = false"; fi
} >"$WORK/hubdns.toml"
"$HUBDNS" --check-config "$WORK/hubdns.toml" >&2 || die "hubdns rejects the benchmark configuration $WORK/hubdns.toml"

cat >"$WORK/dnsdist.conf" <<EOF
-- dnsdist benchmark configuration (written by bench/run.sh)
setSecurityPollSuffix("")   -- no security polling over real DNS
setLocal("$ADDR:$DD_PORT")   -- one UDP (and TCP) listener: one receiving thread
setACL({"127.0.0.0/8"})
setMaxUDPOutstanding(65535)
setMaxTCPClientThreads(1)
newServer({address="$ADDR:$UP_PORT", name="knot", checkName="bench.test.", checkType="SOA", checkInterval=2})
-- no packet cache, no console (controlSocket), no carbon
EOF
dnsdist --check-config -C "$WORK/dnsdist.conf" >&2 || die "dnsdist rejects $WORK/dnsdist.conf"

# The cache rounds: the same two, each with its cache on (hubdns's defaults; a dnsdist
# packet cache of the same size), on ports of their own.
sed -e "s/$ADDR:$HUB_PORT/$ADDR:$HUBC_PORT/" -e "s/$ADDR:$HEALTH_PORT/$ADDR:$HUBC_HEALTH_PORT/" \
  -e '/^\[cache\]$/,/^enabled = false$/d' -e '/^cache = false$/d' "$WORK/hubdns.toml" >"$WORK/hubdns-cache.toml"
if grep -q '^enabled = false' "$WORK/hubdns-cache.toml"; then die "could not turn the cache on in $WORK/hubdns-cache.toml"; fi
"$HUBDNS" --check-config "$WORK/hubdns-cache.toml" >&2 || die "hubdns rejects $WORK/hubdns-cache.toml"
sed -e "s/$ADDR:$DD_PORT/$ADDR:$DDC_PORT/" -e 's/^-- no packet cache.*$/pc = newPacketCache(100000)\ngetPool(""):setCache(pc)/' \
  "$WORK/dnsdist.conf" >"$WORK/dnsdist-cache.conf"
grep -q newPacketCache "$WORK/dnsdist-cache.conf" || die "could not add a packet cache to $WORK/dnsdist-cache.conf"
dnsdist --check-config -C "$WORK/dnsdist-cache.conf" >&2 || die "dnsdist rejects $WORK/dnsdist-cache.conf"

# ---- helpers for measurements ---------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

proc_cpu() { # PID -> utime+stime of the whole process, seconds
  local f
  f=$(sed 's/^.*) //' "/proc/$1/stat") || die "cannot read /proc/$1/stat"
  awk -v t="$CLK_TCK" '{ printf "%.4f\n", ($12 + $13) / t }' <<<"$f"
}
cpu_soft() { # CPU -> irq+softirq time of that CPU since boot, seconds (sampled at the tick)
  awk -v c="cpu$1" -v t="$CLK_TCK" '$1 == c { printf "%.4f\n", ($7 + $8) / t }' /proc/stat
}
others_cpu() { # OTHERS = utime+stime+cutime+cstime summed over every process that is not part
  # of this benchmark (this shell with the children it reaped, knotd, hubdns, dnsdist),
  # kernel threads included, seconds. Its change over a round is the CPU the rest of the
  # machine used meanwhile: a process that exits is counted in its parent's cutime.
  OTHERS=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v t="$CLK_TCK" -v skip=" $$ $UP_PID $HUB_PID $DD_PID $FLOOR_PID $HTTP_FLOOR_PID $HUBC_PID $DDC_PID $ECHO_PID " '
    { pid = $1; if (index(skip, " " pid " ")) next
      line = $0; sub(/^[0-9]+ \(.*\) /, "", line); split(line, f, " ")
      s += f[12] + f[13] + f[14] + f[15] }
    END { printf "%.4f\n", s / t }')
}
children_cpu() { # CHILDREN = CPU time of the processes this shell has reaped (dnsperf...), s
  times >"$WORK/times.tmp" # `times` must run in this shell, not in a $(...)
  CHILDREN=$(sed -n 2p "$WORK/times.tmp" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] } printf "%.4f\n", s }')
}
dp() { # FILE LABEL -> the first word after LABEL in dnsperf's statistics
  awk -v l="$2" 'i = index($0, l) { s = substr($0, i + length(l)); split(s, a, " "); print a[1]; exit }' "$1"
}
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f\n", b - a }'; }

# dnsperf_run OUTFILE PORT SECONDS [dnsperf options...]: bounded, on the load CPU
dnsperf_run() {
  local out=$1 port=$2 secs=$3
  shift 3
  # In the background and waited for, so that a signal to this script is handled at once.
  timeout -k 5 $((secs + 30)) "${PRIO[@]}" taskset -c "$LOAD_CPU" \
    dnsperf -s "$ADDR" -p "$port" -d "$WORK/$QFILE" -l "$secs" -t 2 "$@" >"$out" 2>&1 &
  local dpid=$! rc=0
  PIDS+=("$dpid")
  NAMES+=(dnsperf)
  wait "$dpid" || rc=$?
  forget "$dpid"
  ((rc == 0)) || { tail -n 5 "$out" >&2; die "dnsperf against port $port failed (see $out)"; }
  [[ -n $(dp "$out" "Queries completed:") ]] || die "no dnsperf statistics in $out"
}

# one_query PORT: true when the forwarder answers h1.bench.test with NOERROR
one_query() {
  local out=$WORK/one.out
  timeout 10 "${PRIO[@]}" taskset -c "$LOAD_CPU" dnsperf -s "$ADDR" -p "$1" -d "$WORK/one.txt" -n 1 -t 1 >"$out" 2>&1 || return 1
  [[ $(dp "$out" "Queries completed:") == 1 ]] && grep -q "NOERROR 1" "$out"
}
wait_answer() { # NAME PORT PID LOGFILE
  local deadline=$((SECONDS + 15))
  until one_query "$2"; do
    alive_or_die "$1" "$3" "$4"
    ((SECONDS < deadline)) || die "$1 on $ADDR:$2 does not answer h1.bench.test within 15 s (log: $4)"
    sleep 0.2
  done
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- start upstream and forwarders ----------------------------------------------------
log "starting knotd (upstream) on $ADDR:$UP_PORT, CPU $LOAD_CPU"
start knotd "$WORK/knotd.log" "${PRIO[@]}" taskset -c "$LOAD_CPU" knotd -c "$WORK/knot.conf"
UP_PID=$STARTED
comm_is "$UP_PID" knotd || { alive_or_die knotd "$UP_PID" "$WORK/knotd.log"; die "pid $UP_PID is not knotd: the setsid/nice/taskset wrappers did not exec as expected"; }
wait_answer knotd "$UP_PORT" "$UP_PID" "$WORK/knotd.log"

log "starting hubdns on $ADDR:$HUB_PORT (health $ADDR:$HEALTH_PORT), CPU $FWD_CPU"
start hubdns "$WORK/hubdns.log" "${PRIO[@]}" taskset -c "$FWD_CPU" "$HUBDNS" --config "$WORK/hubdns.toml"
HUB_PID=$STARTED
comm_is "$HUB_PID" hubdns || { alive_or_die hubdns "$HUB_PID" "$WORK/hubdns.log"; die "pid $HUB_PID is not hubdns: the setsid/nice/taskset wrappers did not exec as expected"; }
deadline=$((SECONDS + 20))
until timeout 5 "$RZ" "$ADDR" "$HEALTH_PORT" 1 /readyz 1000 2>/dev/null | grep -q ' ok=1 '; do
  alive_or_die hubdns "$HUB_PID" "$WORK/hubdns.log"
  ((SECONDS < deadline)) || die "hubdns /readyz is not 200 within 20 s (log: $WORK/hubdns.log)"
  sleep 0.2
done
wait_answer hubdns "$HUB_PORT" "$HUB_PID" "$WORK/hubdns.log"

log "starting dnsdist on $ADDR:$DD_PORT, CPU $FWD_CPU"
start dnsdist "$WORK/dnsdist.log" "${PRIO[@]}" taskset -c "$FWD_CPU" dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf"
DD_PID=$STARTED
comm_is "$DD_PID" dnsdist || { alive_or_die dnsdist "$DD_PID" "$WORK/dnsdist.log"; die "pid $DD_PID is not dnsdist: the setsid/nice/taskset wrappers did not exec as expected"; }
wait_answer dnsdist "$DD_PORT" "$DD_PID" "$WORK/dnsdist.log"

log "starting the floor relay on $ADDR:$FLOOR_PORT, CPU $FWD_CPU"
start floor "$WORK/floor.log" "${PRIO[@]}" taskset -c "$FWD_CPU" "$FLOOR" "$FLOOR_PORT" "$UP_PORT"
FLOOR_PID=$STARTED
comm_is "$FLOOR_PID" floor_relay || { alive_or_die floor "$FLOOR_PID" "$WORK/floor.log"; die "pid $FLOOR_PID is not floor_relay"; }
wait_answer floor "$FLOOR_PORT" "$FLOOR_PID" "$WORK/floor.log"

log "starting the minimal HTTP responder on $ADDR:$HTTP_FLOOR_PORT, CPU $FWD_CPU"
start http_floor "$WORK/http_floor.log" "${PRIO[@]}" taskset -c "$FWD_CPU" "$HTTP_FLOOR" "$HTTP_FLOOR_PORT"
HTTP_FLOOR_PID=$STARTED
deadline=$((SECONDS + 10))
until timeout 5 "$RZ" "$ADDR" "$HTTP_FLOOR_PORT" 1 / 1000 2>/dev/null | grep -q ' ok=1 '; do
  alive_or_die http_floor "$HTTP_FLOOR_PID" "$WORK/http_floor.log"
  ((SECONDS < deadline)) || die "http_floor does not answer within 10 s"
  sleep 0.2
done

log "starting hubdns with its cache on $ADDR:$HUBC_PORT, dnsdist with a packet cache on $ADDR:$DDC_PORT, the echo floor on $ADDR:$ECHO_PORT (CPU $FWD_CPU)"
start hubdns_cache "$WORK/hubdns_cache.log" "${PRIO[@]}" taskset -c "$FWD_CPU" "$HUBDNS" --config "$WORK/hubdns-cache.toml"
HUBC_PID=$STARTED
start dnsdist_cache "$WORK/dnsdist_cache.log" "${PRIO[@]}" taskset -c "$FWD_CPU" dnsdist --supervised --disable-syslog -C "$WORK/dnsdist-cache.conf"
DDC_PID=$STARTED
start floor_echo "$WORK/floor_echo.log" "${PRIO[@]}" taskset -c "$FWD_CPU" "$FLOOR" "$ECHO_PORT" 0
ECHO_PID=$STARTED
wait_answer hubdns_cache "$HUBC_PORT" "$HUBC_PID" "$WORK/hubdns_cache.log"
wait_answer dnsdist_cache "$DDC_PORT" "$DDC_PID" "$WORK/dnsdist_cache.log"
wait_answer floor_echo "$ECHO_PORT" "$ECHO_PID" "$WORK/floor_echo.log"

port_of() {
  case $1 in
    hubdns) echo "$HUB_PORT" ;; dnsdist) echo "$DD_PORT" ;; floor) echo "$FLOOR_PORT" ;;
    hubdns_cache) echo "$HUBC_PORT" ;; dnsdist_cache) echo "$DDC_PORT" ;; floor_echo) echo "$ECHO_PORT" ;;
  esac
}
pid_of() {
  case $1 in
    hubdns) echo "$HUB_PID" ;; dnsdist) echo "$DD_PID" ;; floor) echo "$FLOOR_PID" ;;
    hubdns_cache) echo "$HUBC_PID" ;; dnsdist_cache) echo "$DDC_PID" ;; floor_echo) echo "$ECHO_PID" ;;
  esac
}
log_of() { echo "$WORK/$1.log"; }

# measure KIND FWD ROUND SECONDS [dnsperf options...]: one dnsperf run with CPU accounting
measure() {
  local kind=$1 fwd=$2 round=$3 secs=$4
  shift 4
  local pid port out c0 c1 s0 s1 o0 o1 k0 k1 d0 d1 w0 w1
  pid=$(pid_of "$fwd")
  port=$(port_of "$fwd")
  out=$WORK/lat/$kind-$fwd-$round.txt
  alive_or_die "$fwd" "$pid" "$(log_of "$fwd")"
  c0=$(proc_cpu "$pid")
  s0=$(cpu_soft "$FWD_CPU")
  others_cpu
  o0=$OTHERS
  k0=$(proc_cpu "$UP_PID")
  children_cpu
  d0=$CHILDREN
  w0=$EPOCHREALTIME
  dnsperf_run "$out" "$port" "$secs" -q "$OUTSTANDING" -c "$CLIENTS" "$@"
  c1=$(proc_cpu "$pid")
  w1=$EPOCHREALTIME
  children_cpu
  d1=$CHILDREN
  k1=$(proc_cpu "$UP_PID")
  others_cpu
  o1=$OTHERS
  s1=$(cpu_soft "$FWD_CPU")
  alive_or_die "$fwd" "$pid" "$(log_of "$fwd")"
  local line
  line="kind=$kind fwd=$fwd round=$round sent=$(dp "$out" "Queries sent:") queries=$(dp "$out" "Queries completed:")"
  line+=" lost=$(dp "$out" "Queries lost:") qps=$(dp "$out" "Queries per second:") runtime=$(dp "$out" "Run time (s):")"
  line+=" cpu_s=$(minus "$c0" "$c1") soft0_s=$(minus "$s0" "$s1") other_s=$(minus "$o0" "$o1")"
  line+=" knot_s=$(minus "$k0" "$k1") dnsperf_s=$(minus "$d0" "$d1") wall_s=$(minus "$w0" "$w1")"
  if [[ $kind == rate || $kind == crate ]]; then line+=" rate=$RATE latfile=lat/$kind-$fwd-$round.txt"; fi
  echo "$line" >>"$RESULTS"
  log "  $kind $fwd round $round: $(dp "$out" "Queries per second:") q/s, lost $(dp "$out" "Queries lost:")"
}

# ---- syscall counting method ----------------------------------------------------------
SYS_METHOD=none
SC_NAMES=(recvmsg recvmmsg recvfrom sendmsg sendmmsg sendto epoll_wait epoll_pwait epoll_pwait2
  epoll_ctl io_uring_enter read write futex getrandom poll ppoll clock_nanosleep)
PERF_EVENTS=raw_syscalls:sys_enter
SYSCALLS=${BENCH_SYSCALLS:-auto} # auto, perf, strace or none
if [[ $SYSCALLS == none ]]; then
  log "syscall counting off (BENCH_SYSCALLS=none)"
elif [[ $SYSCALLS != strace ]] && command -v perf >/dev/null &&
  perf stat -x, -e raw_syscalls:sys_enter true 2>&1 | grep -q '^[1-9][0-9]*,'; then
  SYS_METHOD=perf
  for n in "${SC_NAMES[@]}"; do
    if perf stat -x, -e "syscalls:sys_enter_$n" true >/dev/null 2>&1; then
      PERF_EVENTS+=",syscalls:sys_enter_$n"
    fi
  done
elif [[ $SYSCALLS == perf ]]; then
  die "BENCH_SYSCALLS=perf, but perf cannot count raw_syscalls:sys_enter here"
elif command -v strace >/dev/null; then
  SYS_METHOD=strace
  log "counting syscalls with strace -c -f at $STRACE_RATE q/s (perf not used or cannot count raw_syscalls:sys_enter here)"
else
  log "neither perf nor strace usable: no syscall counts"
fi

# count_syscalls FWD MODE: a separate round with the counter attached to the forwarder
count_syscalls() {
  local fwd=$1 mode=$2 pid port out cnt cpid
  pid=$(pid_of "$fwd")
  port=$(port_of "$fwd")
  out=$WORK/lat/sys-$mode-$fwd.txt
  cnt=$WORK/lat/sys-$mode-$fwd.counts
  local rate_opts=()
  if [[ $mode == rate ]]; then rate_opts=(-Q "$RATE"); fi
  if [[ $SYS_METHOD == perf ]]; then
    timeout -s INT -k 5 $((SYS_SECONDS + 40)) perf stat -x, -o "$cnt" -e "$PERF_EVENTS" -p "$pid" &
    cpid=$!
    PIDS+=("$cpid")
    NAMES+=(perf)
    sleep 0.5
    dnsperf_run "$out" "$port" "$SYS_SECONDS" -q "$OUTSTANDING" -c "$CLIENTS" "${rate_opts[@]}"
    kill -INT "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    forget "$cpid"
    local line
    line="kind=sys method=perf fwd=$fwd mode=$mode rate=$([[ $mode == rate ]] && echo "$RATE" || echo max) queries=$(dp "$out" "Queries completed:") qps=$(dp "$out" "Queries per second:")"
    line+=" total=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print ($1 ~ /^[0-9]+$/) ? $1 : 0 }' "$cnt")"
    line+=$(awk -F, '$3 ~ /^syscalls:sys_enter_/ { n = $3; sub("syscalls:sys_enter_", "", n); printf " sc_%s=%s", n, ($1 ~ /^[0-9]+$/) ? $1 : 0 }' "$cnt")
    echo "$line" >>"$RESULTS"
  elif [[ $SYS_METHOD == strace ]]; then
    [[ $mode == rate ]] || return 0 # strace slows every syscall down: no saturation figure
    timeout -s INT -k 5 $((SYS_SECONDS + 40)) strace -c -f -qq -o "$cnt" -p "$pid" &
    cpid=$!
    PIDS+=("$cpid")
    NAMES+=(strace)
    sleep 1
    dnsperf_run "$out" "$port" "$SYS_SECONDS" -q "$OUTSTANDING" -c "$CLIENTS" -Q "$STRACE_RATE"
    kill -INT "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    forget "$cpid"
    local line
    line="kind=sys method=strace fwd=$fwd mode=$mode rate=$STRACE_RATE queries=$(dp "$out" "Queries completed:") qps=$(dp "$out" "Queries per second:")"
    # strace -c rows: % time, seconds, usecs/call, calls, [errors], syscall
    line+=" total=$(awk '$NF == "total" { print $4 }' "$cnt")"
    line+=$(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { printf " sc_%s=%s", $NF, $4 }' "$cnt")
    echo "$line" >>"$RESULTS"
  fi
  log "  syscalls $mode $fwd counted ($SYS_METHOD)"
}

# ---- the rounds -----------------------------------------------------------------------
FWDS=(hubdns dnsdist)
log "warm-up (2 s each)"
for f in "${FWDS[@]}"; do
  dnsperf_run "$WORK/lat/warmup-$f.txt" "$(port_of "$f")" 2 -q "$OUTSTANDING" -c "$CLIENTS"
done

for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order=(hubdns dnsdist); else order=(dnsdist hubdns); fi
  log "round $r/$ROUNDS: saturation (${SAT_SECONDS} s), then $RATE q/s (${RATE_SECONDS} s), order ${order[*]}"
  for f in "${order[@]}"; do measure sat "$f" "$r" "$SAT_SECONDS"; done
  measure sat floor "$r" "$SAT_SECONDS" # saturation only: its CPU per query is the yardstick
  for f in "${order[@]}"; do measure rate "$f" "$r" "$RATE_SECONDS" -Q "$RATE" -v; done
done

if [[ $SYS_METHOD != none ]]; then
  log "syscall counting rounds (${SYS_SECONDS} s each, $SYS_METHOD)"
  for f in "${FWDS[@]}"; do
    count_syscalls "$f" sat
    count_syscalls "$f" rate
  done
fi

# ---- the cache-hit path -----------------------------------------------------------------
QFILE=hits.txt
log "cache rounds: 1,000 names asked over and over (every query a cache hit once warm)"
for f in hubdns_cache dnsdist_cache floor_echo; do
  dnsperf_run "$WORK/lat/warmup-$f.txt" "$(port_of "$f")" 3 -q "$OUTSTANDING" -c "$CLIENTS"
done
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order=(hubdns_cache dnsdist_cache); else order=(dnsdist_cache hubdns_cache); fi
  log "cache round $r/$ROUNDS: saturation (${SAT_SECONDS} s), then $RATE q/s (${RATE_SECONDS} s), order ${order[*]}"
  for f in "${order[@]}"; do measure csat "$f" "$r" "$SAT_SECONDS"; done
  measure csat floor_echo "$r" "$SAT_SECONDS"
  for f in "${order[@]}"; do measure crate "$f" "$r" "$RATE_SECONDS" -Q "$RATE" -v; done
done
if [[ $SYS_METHOD != none ]]; then
  for f in hubdns_cache dnsdist_cache; do count_syscalls "$f" sat; done
fi

# ---- the upstream rate with a realistic mix --------------------------------------------
# hubdns with its cache, emptied first, gets a Zipf mix at ZIPF_RATE q/s; its own counters,
# read each second, say how many queries went upstream.
QFILE=zipf.txt
log "upstream rate: Zipf mix over the zone's names at $ZIPF_RATE q/s for $ZIPF_SECONDS s, cache emptied first"
flushed=$(curl -s -X POST "http://$ADDR:$HUBC_HEALTH_PORT/cache/flush") || die "POST /cache/flush failed"
log "  $flushed"
upstream_count() { curl -s "http://$ADDR:$HUBC_HEALTH_PORT/metrics" | awk '$1 == "hubdns_upstream_queries_total" { print $2 }'; }
client_count() { curl -s "http://$ADDR:$HUBC_HEALTH_PORT/metrics" | awk '$1 ~ /^hubdns_dns_queries_total/ { s += $2 } END { print s + 0 }'; }
timeout -k 5 $((ZIPF_SECONDS + 30)) "${PRIO[@]}" taskset -c "$LOAD_CPU" dnsperf -s "$ADDR" -p "$HUBC_PORT" -d "$WORK/zipf.txt" \
  -l "$ZIPF_SECONDS" -Q "$ZIPF_RATE" -t 2 -q "$OUTSTANDING" -c "$CLIENTS" >"$WORK/lat/zipf.txt" 2>&1 &
zpid=$!
PIDS+=("$zpid")
NAMES+=(dnsperf)
u0=$(upstream_count)
c0=$(client_count)
for ((second = 1; second <= ZIPF_SECONDS; second++)); do
  sleep 1
  u1=$(upstream_count)
  c1=$(client_count)
  echo "kind=zipf second=$second upstream=$((u1 - u0)) clients=$((c1 - c0))" >>"$RESULTS"
  u0=$u1
  c0=$c1
done
wait "$zpid" || die "dnsperf (Zipf round) failed"
forget "$zpid"
echo "kind=zipf_total rate=$ZIPF_RATE qps=$(dp "$WORK/lat/zipf.txt" "Queries per second:") lost=$(dp "$WORK/lat/zipf.txt" "Queries lost:") names=$(sort -u "$WORK/zipf.txt" | wc -l)" >>"$RESULTS"
QFILE=queries.txt

log "GET /readyz latency, hubdns and the minimal responder alternately: idle, then while dnsperf saturates hubdns's DNS worker"
# probe_round PHASE: one round of READYZ_COUNT requests to each, hubdns first then the floor
probe_round() {
  local rz
  rz=$(timeout 120 "${RZ_RUN[@]}" "$ADDR" "$HEALTH_PORT" "$READYZ_COUNT" /readyz 2000) || die "the /readyz probe client failed"
  echo "kind=readyz target=hubdns phase=$1 $rz" >>"$RESULTS"
  rz=$(timeout 120 "${RZ_RUN[@]}" "$ADDR" "$HTTP_FLOOR_PORT" "$READYZ_COUNT" / 2000) || die "the probe client failed against http_floor"
  echo "kind=readyz target=http_floor phase=$1 $rz" >>"$RESULTS"
}
probe_round idle
load_secs=30
timeout -k 5 $((load_secs + 30)) "${PRIO[@]}" taskset -c "$LOAD_CPU" dnsperf -s "$ADDR" -p "$HUB_PORT" -d "$WORK/queries.txt" \
  -l "$load_secs" -t 2 -q "$OUTSTANDING" -c "$CLIENTS" >"$WORK/lat/readyz-load.txt" 2>&1 &
lpid=$!
PIDS+=("$lpid")
NAMES+=(dnsperf)
sleep 2
for ((r = 1; r <= 3; r++)); do
  probe_round saturated
  # The load must still be running when a round ends, otherwise it is not "under load".
  kill -0 "$lpid" 2>/dev/null || die "dnsperf ended before the /readyz rounds under load did: raise load_secs"
done
wait "$lpid" || die "dnsperf (load for the /readyz round) failed"
forget "$lpid"
echo "kind=readyz_load qps=$(dp "$WORK/lat/readyz-load.txt" "Queries per second:")" >>"$RESULTS"

# ---- report ---------------------------------------------------------------------------
{
  echo "## hubdns vs dnsdist — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  hv=$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -n 1)
  if [[ -n $hv ]]; then hv="virtual machine, hypervisor $hv"; else hv="no hypervisor reported"; fi
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc --all) CPUs ($hv), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
  echo
  echo "Versions: $("$HUBDNS" --version 2>&1 | head -n 1) ($HUBDNS_DESC); $(dnsdist --version 2>&1 | head -n 1); dnsperf $(dnsperf -H 2>&1 | sed -n 's/^Version //p' | head -n 1); knotd $(knotd --version 2>&1 | sed 's/.*version //' | head -n 1); $(perf --version 2>/dev/null || echo 'perf absent')"
  echo
  echo "Load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) (this script's own load adds about 2 at the end)."
  echo
  echo "Settings: forwarders (hubdns, dnsdist) pinned to CPU $FWD_CPU; dnsperf, knotd (1 UDP worker) and the probe client pinned to CPU $LOAD_CPU; all of them at nice $NICE (so other work on the machine gets little of those CPUs while they are busy)."
  echo "Query file: $(wc -l <"$WORK/queries.txt") A queries, ~90% names of bench.test (10,000 A records), ~10% NXDOMAIN; zone served by knotd on $ADDR:$UP_PORT."
  echo "Saturation rounds: \`dnsperf -l $SAT_SECONDS -q $OUTSTANDING -c $CLIENTS -t 2\`; latency rounds: \`dnsperf -l $RATE_SECONDS -Q $RATE -q $OUTSTANDING -c $CLIENTS -t 2 -v\`;"
  echo "$ROUNDS rounds each, alternating which forwarder goes first; syscalls counted in separate ${SYS_SECONDS} s rounds ($SYS_METHOD)."
  echo "hubdns: workers = 1, cache off, one rule \".\" to knotd (sequential), max_inflight = 100000, max_outstanding = 65535."
  echo "dnsdist: one setLocal listener, newServer to knotd, setMaxUDPOutstanding(65535), no packet cache, no console."
  echo "GET /readyz: bench/readyz_probe.c on CPU $LOAD_CPU at $RZ_PRIO, $READYZ_COUNT sequential requests per round (a new TCP connection each), alternating between hubdns and bench/http_floor.c (a blocking single-thread responder pinned to CPU $FWD_CPU beside hubdns): one idle round, then three while dnsperf saturates hubdns."
  echo "Cache rounds: hubdns with its default cache (one worker) and dnsdist with newPacketCache(100000) on its pool, both asked $(sort -u "$WORK/hits.txt" | wc -l) names over and over (hits.txt, after a 3 s warm-up); floor_echo is bench/floor_relay.c answering every query itself (the floor of a cache hit)."
  echo "Upstream-rate round: hubdns with its cache emptied, dnsperf -Q $ZIPF_RATE -l $ZIPF_SECONDS over zipf.txt ($(wc -l <"$WORK/zipf.txt") queries, Zipf s = 1 over the zone's names, zone TTL 300 s)."
  echo "floor: bench/floor_relay.c, saturation rounds only (after the other two in each round): recvmmsg/sendmmsg, one socket connected to knotd, no parsing, no checks, no timeouts."
  echo
  python3 "$BENCH/report.py" "$WORK"
  echo
  echo "Raw data: $WORK (results.txt, dnsperf outputs, configurations, logs). Wall time of this run: ${SECONDS} s, build and installs included."
} | tee "$WORK/report.md"
log "done"
exit 0
