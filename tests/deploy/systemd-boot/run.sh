#!/usr/bin/env bash
# Manual check: the hubdns .deb and its hardened unit under a real systemd (PID 1).
#
# Boots Debian 12 with systemd-nspawn (loopback-only network), installs the package there
# and checks what only a real service manager shows: postinst enables and starts the unit,
# Type=notify readiness, DynamicUser, the one capability, seccomp, LimitRTPRIO (SCHED_FIFO),
# DNS on port 53 through a fake upstream on the container's loopback, reload (good and bad
# file), the watchdog restart, the drain on stop, purge. See README.md beside this file.
#
# Usage: sudo tests/deploy/systemd-boot/run.sh [path/to/hubdns_*.deb]
# Env:   HUBDNS_NSPAWN_ROOT (default /var/tmp/hubdns-nspawn-root, kept as a cache: every
#        boot runs on a throw-away overlay, so the tree stays pristine; delete it to rebuild)
#        HUBDNS_MIRROR (default: the first Debian mirror of this machine's apt sources)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
root=${HUBDNS_NSPAWN_ROOT:-/var/tmp/hubdns-nspawn-root}
debs=("$repo"/build/hubdns_*_amd64.deb)
deb=${1:-${debs[-1]}}
path=/usr/sbin:/usr/bin:/sbin:/bin
passed=0 failed=0 skipped=0 runner="" leader="" work=""

log() { printf '%s\n' "== $*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 2; }

# check NAME REGEX VALUE: PASS when VALUE matches the extended regex (where '.' also matches
# a newline); VALUE is printed.
check() {
  if [[ $3 =~ $2 ]]; then
    passed=$((passed + 1)); printf 'PASS %s\n' "$1"
  else
    failed=$((failed + 1)); printf 'FAIL %s (want /%s/)\n' "$1" "$2"
  fi
  [[ -z $3 ]] || printf '%s\n' "$3" | sed 's/^/     | /'
}
skip() { skipped=$((skipped + 1)); printf 'SKIP %s\n' "$*"; }

# ct CMD...: runs CMD inside the booted container (all its namespaces), bounded.
ct() { timeout 120 nsenter -t "$leader" -a env -i PATH="$path" LC_ALL=C.UTF-8 "$@"; }
# Like ct, but never fails: for values that a check judges.
ctv() { ct "$@" 2>&1 || true; }
prop() { ctv systemctl show hubdns -p "$1" --value; }
cursor() { ct journalctl -n0 --show-cursor | sed -n 's/^-- cursor: //p'; }
# journal CURSOR: the hubdns lines (its output and systemd's about it) after CURSOR. Not
# with -u: journalctl 252 then drops the first matching entry after a non-matching cursor.
journal() { ctv journalctl --after-cursor="$1" -o short-precise --no-pager -q | grep -E 'hubdns(\[|\.service)' || true; }
# wait_until SECONDS CMD...: polls CMD every 0.25 s until it succeeds or time is up.
wait_until() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.25
  done
}
journal_has() { journal "$1" | grep -Eq "$2"; }
dns() { ctv dig @127.0.0.1 example.com A +short +time=2 +tries=1 "$@"; }
http() { ctv curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:8053/$1"; }
ready() { [[ $(http readyz) == 200 ]]; }
status_ready() { [[ $(prop StatusText) == ready* ]]; }
inactive() { [[ $(ctv systemctl is-active hubdns) == inactive ]]; }
exists() { if ct test -e "$1"; then echo "$1"; else echo "no $1"; fi; }
gone() { ! kill -0 "$runner" 2>/dev/null; }
# dropin NAME [SETTING...]: writes (no SETTING: removes) a runtime drop-in for hubdns.service.
dropin() {
  local name=$1 dir=/run/systemd/system/hubdns.service.d; shift
  if (($#)); then
    printf '[Service]\n' >"$work/$name.conf"
    printf '%s\n' "$@" >>"$work/$name.conf"
    ct mkdir -p "$dir"
    ct cp "/hubdns-test/$name.conf" "$dir/"
  else
    ct rm -f "$dir/$name.conf"
  fi
  ct systemctl daemon-reload
}

cleanup() {
  local rc=$?
  if [[ -n $runner ]] && kill -0 "$runner" 2>/dev/null; then
    log "powering the container off"
    kill -TERM "$runner" 2>/dev/null || true  # timeout passes it on; nspawn halts the container
    wait_until 60 gone || kill -KILL "$runner" 2>/dev/null || true
    wait "$runner" 2>/dev/null || true
  fi
  [[ -z $work ]] || rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- preparation --------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "run as root (debootstrap, systemd-nspawn)"
[[ -f $deb ]] || die "no .deb: build it (cmake --build build --target package) or pass its path"
if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
  log "installing debootstrap and systemd-container"
  timeout 600 apt-get install -y --no-install-recommends debootstrap systemd-container >/dev/null
fi
mirror=${HUBDNS_MIRROR:-$(grep -hoE '^(URIs:|deb)[[:space:]]+https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | awk '{print $2; exit}' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
# The package's own dependencies (first alternative of each) plus the tools the checks use.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | sort | paste -sd,)
include="systemd,systemd-sysv,dbus,libnss-systemd,bind9-dnsutils,curl,python3,procps,$deps"
if [[ ! -f $root/.hubdns-include ]] || [[ $(cat "$root/.hubdns-include") != "$include" ]]; then
  log "debootstrap bookworm into $root from $mirror (a few minutes)"
  rm -rf "$root"
  timeout 1200 debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" \
    >/tmp/hubdns-debootstrap.log 2>&1 || die "debootstrap failed: see /tmp/hubdns-debootstrap.log"
  echo hubdnstest >"$root/etc/hostname"
  printf '%s' "$include" >"$root/.hubdns-include"
fi

work=$(mktemp -d /tmp/hubdns-systemd-boot.XXXXXX)
cp "$deb" "$work/hubdns.deb"
# The only upstream: answers every A question with 192.0.2.53, anything else with NOERROR
# and no data (enough for the SOA health probe and the loop probe), over UDP and TCP.
cat >"$work/fake_upstream.py" <<'EOF'
import socket, socketserver, struct, threading

def answer(q):
    if len(q) < 17 or struct.unpack(">H", q[4:6])[0] != 1:
        return None
    i = 12
    while i < len(q) and q[i]:
        i += 1 + q[i]
    if i + 5 > len(q):
        return None
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.53") if qtype == 1 else b""
    flags = 0x8080 | (struct.unpack(">H", q[2:4])[0] & 0x7900)
    return q[:2] + struct.pack(">HHHHH", flags, 1, 1 if rr else 0, 0, 0) + q[12:i + 5] + rr

class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        a = answer(self.request[0])
        if a:
            self.request[1].sendto(a, self.client_address)

class Tcp(socketserver.StreamRequestHandler):
    def handle(self):
        while (head := self.rfile.read(2)) and len(head) == 2:
            a = answer(self.rfile.read(struct.unpack(">H", head)[0]))
            if a:
                self.wfile.write(struct.pack(">H", len(a)) + a)

for cls, handler in ((socketserver.ThreadingUDPServer, Udp), (socketserver.ThreadingTCPServer, Tcp)):
    cls.allow_reuse_address = True
    threading.Thread(target=cls(("127.0.0.1", 5300), handler).serve_forever).start()
EOF
cat >"$work/test.toml" <<'EOF'
# Loopback only: DNS on port 53 (CAP_NET_BIND_SERVICE under DynamicUser), the fake upstream.
[server]
listen = ["127.0.0.1:53"]
allow = ["127.0.0.0/8"]
[health]
listen = ["127.0.0.1:8053"]
interval = "1s"
timeout = "500ms"
[lifecycle]
drain_grace = "3s"
scheduled_events = "off"
[[forward]]
zone = "."
upstreams = ["127.0.0.1:5300"]
critical = true
EOF
printf '[server]\nlisten = ["127.0.0.1:53"\n' >"$work/bad.toml"
# LimitRTPRIO=1 needs a PID 1 that may raise the hard RLIMIT_RTPRIO: with CAP_SYS_RESOURCE,
# or a hard limit of at least 1 inherited. Sandboxes (this Firecracker VM) may have neither.
capbnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status)
rt_possible=no
if (((16#$capbnd >> 24) & 1)) || [[ $(ulimit -Hr) != 0 ]]; then rt_possible=yes; fi

# --- boot ---------------------------------------------------------------------------------
# --volatile=overlay: the tree stays read-only under a tmpfs overlay, so each run starts
# from a pristine system. --keep-unit/--register=no: this host has no systemd or machined.
# CAP_SYS_RESOURCE: nspawn drops it by default, and without it the container's PID 1 cannot
# raise RLIMIT_RTPRIO above the hard limit it inherited (0), so LimitRTPRIO=1 would silently
# become 0; a real host's PID 1 has it.
log "booting $root with systemd-nspawn (private network: loopback only)"
timeout --kill-after=30 1500 systemd-nspawn -q -b -D "$root" --volatile=overlay \
  --private-network --register=no --keep-unit --capability=CAP_SYS_RESOURCE -M hubdnstest \
  --bind-ro="$work:/hubdns-test" --console=pipe </dev/null >"$work/console.log" 2>&1 &
runner=$!
find_leader() {
  local nspawn
  nspawn=$(pgrep -P "$runner" -x systemd-nspawn) && leader=$(pgrep -P "$nspawn" -x systemd)
}
wait_until 30 find_leader || { cat "$work/console.log"; die "the container did not boot"; }
wait_until 30 ct test -S /run/systemd/private || true  # PID 1's socket for systemctl
state=$(ctv systemctl is-system-running --wait)
check "container booted with systemd as PID 1 (leader $leader)" '^running$' "$state"
[[ $state == running ]] || ctv systemctl --failed --no-pager
check "container network: loopback only" '^lo$' "$(ctv ls /sys/class/net)"

# --- install ------------------------------------------------------------------------------
log "apt-get install ./hubdns.deb (postinst enables and starts; the shipped upstream is unreachable here)"
ctv env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /hubdns-test/hubdns.deb | grep -E '^(Setting up|Created symlink|E:)' || true
check "postinst enabled the unit" '^enabled$' "$(ctv systemctl is-enabled hubdns)"
check "postinst started the unit" '^active$' "$(ctv systemctl is-active hubdns)"

check "systemd-analyze security hubdns (the unit as shipped) <= 2.0" 'exposure level for hubdns.service: (0\.[0-9]|1\.[0-9]|2\.0) ' \
  "$(ctv systemd-analyze security hubdns --no-pager | tail -n1)"

# From here on a syscall outside the filter kills the process (SIGSYS, logged) instead of
# failing quietly with EPERM: every check below also shows that hubdns makes none.
dropin strict-seccomp SystemCallErrorNumber=kill
ct systemd-run -q --unit=fake-upstream python3 /hubdns-test/fake_upstream.py
ct cp /hubdns-test/test.toml /etc/hubdns/hubdns.toml
wait_until 10 ct dig @127.0.0.1 -p 5300 +time=1 +tries=1 example.com || die "fake upstream not answering"
start=$SECONDS
ct systemctl restart hubdns
check "restart with the shipped config (drain_grace 15s) took 15..25 s" '^(1[5-9]|2[0-5]) s$' "$((SECONDS - start)) s"
wait_until 15 ready || true
wait_until 5 status_ready || true  # STATUS= follows the state once a second

# --- the running service ------------------------------------------------------------------
log "service state"
show=$(ctv systemctl show hubdns -p Type,ActiveState,SubState,StatusText,MainPID,NRestarts,WatchdogUSec,Result)
check "systemctl show" '^ActiveState=active MainPID=[0-9]+ NRestarts=0 Result=success StatusText=ready; .* SubState=running Type=notify WatchdogUSec=30s$' \
  "$(sort <<<"$show" | paste -sd' ')"
pid=$(prop MainPID)
status=$(ctv grep -E '^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "/proc/$pid/status")
uid=$(awk '/^Uid:/ {print $2}' <<<"$status")
range=no; if ((uid >= 61184 && uid <= 65519)); then range=yes; fi
check "dynamic uid (61184..65519)" '^yes Uid:' "$range $(grep -E '^(Uid|Gid):' <<<"$status")"
check "only cap_net_bind_service (0x400) in every set" \
  'CapInh:[[:space:]]+0+400.CapPrm:[[:space:]]+0+400.CapEff:[[:space:]]+0+400.CapBnd:[[:space:]]+0+400.CapAmb:[[:space:]]+0+400$' \
  "$(grep '^Cap' <<<"$status")"
check "seccomp filter and no_new_privs" 'NoNewPrivs:[[:space:]]+1.Seccomp:[[:space:]]+2$' "$(grep -E '^(NoNewPrivs|Seccomp):' <<<"$status")"
check "user name of the dynamic uid" '^hubdns ' "$(ctv ps -o user=,uid=,comm= -p "$pid")"
boot_log=$(ctv journalctl -u hubdns -b -o cat --no-pager -q _PID="$pid")
if [[ $rt_possible == yes ]]; then
  check "RLIMIT_RTPRIO is 1" 'Max realtime priority +1 +1' "$(ctv grep 'realtime priority' "/proc/$pid/limits")"
  check "control loop at SCHED_FIFO 1 (one thread FF, the others TS)" 'FF +1 ' "$(ctv ps -L -o tid=,cls=,rtprio=,comm= -p "$pid")"
  check "journal: real-time priority granted" 'control loop runs at real-time priority' "$boot_log"
else
  skip "LimitRTPRIO=1: this host's bounding set lacks CAP_SYS_RESOURCE and its hard RLIMIT_RTPRIO is 0, so no PID 1 here can raise it (see the CAP_SYS_NICE check below)"
  printf '     | %s\n' "$(ctv grep 'realtime priority' "/proc/$pid/limits")" "$(grep 'control loop' <<<"$boot_log")"
  boot_log=$(grep -v 'control loop stays at normal priority' <<<"$boot_log")
fi
check "dig @127.0.0.1 example.com (UDP, port 53)" '^192\.0\.2\.53$' "$(dns)"
check "dig +tcp" '^192\.0\.2\.53$' "$(dns +tcp)"
check "GET /readyz" '^200$' "$(http readyz)"
check "GET /livez" '^200$' "$(http livez)"
withheld=$(grep -E 'withholding the systemd watchdog ping|watchdog pings resumed' <<<"$boot_log" || true)
[[ -z $withheld ]] || printf 'INFO watchdog ping withheld at start (READY=1 comes before the workers run):\n%s\n' "$withheld" | sed '2,$s/^/     | /'
check "journal: no error, EPERM or seccomp trace since the start" '^$' \
  "$(grep -Ei 'level=error|not permitted|EPERM|SIGSYS|seccomp' <<<"$boot_log" || true)"

# --- reload -------------------------------------------------------------------------------
log "systemctl reload (good file, then a broken one)"
c=$(cursor)
ct systemctl reload hubdns
wait_until 10 journal_has "$c" 'configuration reloaded' || true
check "reload: journal" 'configuration reloaded' "$(journal "$c")"
check "reload: same process, active" "^$pid active$" "$(prop MainPID) $(ctv systemctl is-active hubdns)"
c=$(cursor)
ct cp /hubdns-test/bad.toml /etc/hubdns/hubdns.toml
ct systemctl reload hubdns
wait_until 10 journal_has "$c" 'reload failed' || true
check "bad reload: error in the journal" 'configuration reload failed; the running configuration stays' "$(journal "$c")"
check "bad reload: same process, active, still answers" "^$pid active 192\.0\.2\.53$" \
  "$(prop MainPID) $(ctv systemctl is-active hubdns) $(dns)"

log "systemctl start with the broken file"
ct systemctl stop hubdns
c=$(cursor)
check "bad start: systemctl start fails" '^failed$' "$(ct systemctl start hubdns >/dev/null 2>&1 && echo started || echo failed)"
check "bad start: ExecStartPre reports FILE:LINE:COL" 'hubdns.toml:2:26: TOML syntax error' "$(journal "$c" | grep -m1 'TOML' || true)"
# Restart=on-failure retries; StartLimitBurst=5 in StartLimitIntervalSec=60 ends that after
# 5 starts (about 2.25 s each) instead of retrying every 2 s for ever: after 20 s the unit
# is failed, with 4 restarts, and systemd says why.
sleep 20
check "bad start: gives up after 5 starts (not a restart loop)" '^failed NRestarts=4 repeated too quickly$' \
  "$(prop ActiveState) NRestarts=$(prop NRestarts) $(journal "$c" | grep -o -m1 'repeated too quickly' || true)"
ct systemctl stop hubdns
ct systemctl reset-failed hubdns 2>/dev/null || true
ct cp /hubdns-test/test.toml /etc/hubdns/hubdns.toml
ct systemctl start hubdns
wait_until 15 ready || true

# --- watchdog -----------------------------------------------------------------------------
log "watchdog: WatchdogSec=5s drop-in, SIGSTOP the process"
dropin watchdog WatchdogSec=5s
ct systemctl restart hubdns
pid=$(prop MainPID)
c=$(cursor)
ct kill -STOP "$pid"
start=$SECONDS
new_instance() { local p; p=$(prop MainPID); [[ $p != "$pid" && $p != 0 && $(prop ActiveState) == active ]]; }
wait_until 30 new_instance || true
check "watchdog: killed and restarted (NRestarts, seconds from SIGSTOP to the new instance)" '^NRestarts=1 ([3-9]|1[0-5]) s$' \
  "NRestarts=$(prop NRestarts) $((SECONDS - start)) s"
check "watchdog: journal" 'Watchdog timeout' "$(journal "$c" | grep -E 'Watchdog|SIGABRT|Scheduled restart|Started' || true)"
wait_until 10 ready || true
check "watchdog: new instance answers" '^192\.0\.2\.53 200$' "$(dns) $(http readyz)"
dropin watchdog

if [[ $rt_possible == no ]]; then
  # What this host cannot show through LimitRTPRIO: that the rest of the sandboxing (the
  # syscall filter above all) lets sched_setattr(SCHED_FIFO) through. CAP_SYS_NICE instead.
  log "real time through CAP_SYS_NICE (drop-in), since LimitRTPRIO cannot work on this host"
  dropin rt "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_SYS_NICE" "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SYS_NICE"
  ct systemctl restart hubdns
  pid=$(prop MainPID)
  check "with CAP_SYS_NICE: control loop at SCHED_FIFO 1 under the unit's syscall filter" 'FF +1 .*control loop runs at real-time priority' \
    "$(ctv ps -L -o tid=,cls=,rtprio=,comm= -p "$pid"; ctv journalctl -u hubdns -o cat -q _PID="$pid" | grep 'control loop')"
  dropin rt
fi

# --- stop: drain ---------------------------------------------------------------------------
log "systemctl stop: drain (drain_grace 3s)"
c=$(cursor)
ct systemctl stop --no-block hubdns
sleep 1
check "during the drain: /readyz 503, DNS still answered" '^503 192\.0\.2\.53$' "$(http readyz) $(dns)"
wait_until 30 inactive || true
took=$((($(prop InactiveEnterTimestampMonotonic) - $(prop ActiveExitTimestampMonotonic)) / 1000))
check "stop took drain_grace plus little (3000..4500 ms)" '^(3[0-9]{3}|4[0-4][0-9]{2}) ms$' "$took ms"
check "clean exit" '^Result=success ExecMainStatus=0 ActiveState=inactive$' \
  "$(ctv systemctl show hubdns -p Result,ExecMainStatus,ActiveState | paste -sd' ')"
check "stop: journal" 'stopping: draining first.*drain grace over.*hubdns stopped.*Deactivated successfully' "$(journal "$c")"
all=$(ctv journalctl -b -u hubdns -o cat -q)
check "never killed by the syscall filter (SIGSYS) in this boot" '^$' "$(grep -E 'status=31/SYS|SIGSYS' <<<"$all" || true)"
printf 'INFO starts in this boot: %s, of which withheld the first watchdog ping: %s\n' \
  "$(grep -c 'hubdns started' <<<"$all")" "$(grep -c 'withholding the systemd watchdog ping' <<<"$all")"

# --- purge ---------------------------------------------------------------------------------
log "apt-get purge while running (prerm stops it, postrm removes /etc/hubdns)"
ct systemctl start hubdns
ctv env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q hubdns | grep -E '^(Removing|Purging|E:)' || true
check "purge: stopped, unit and /etc/hubdns gone" '^inactive no /lib/systemd/system/hubdns.service no /etc/hubdns$' \
  "$(ctv systemctl is-active hubdns) $(exists /lib/systemd/system/hubdns.service) $(exists /etc/hubdns)"

printf '%s passed, %s failed, %s skipped\n' "$passed" "$failed" "$skipped"
((failed == 0))
