#!/usr/bin/env bash
# The benchmark suite: one entry point, loopback only, bounded in time.
#
#   bash bench/run.sh              full run (about 20 minutes on 2 cores)
#   QUICK=1 bash bench/run.sh      smoke run (1 s loads, fewer connection counts)
#
# Installs what it needs (nginx, wrk, iperf3, curl) with apt-get when missing,
# builds `hftp` in release mode once, measures every server model, nginx,
# iperf3, the base64 encoder and the Python baseline on the same files, writes
# raw JSON under bench/out/ and regenerates BENCHMARKS.md and bench/charts/.
#
# Environment: HFTP_BIN (use this binary, skip the build), DUR (seconds per
# load, default 3), CONNS (default "1 16 64 256 1024"), MODELS (default all),
# IDLE (idle connections for async, poll and uring, default 10000), ROUNDS
# (rounds of the one-connection targets against iperf3 and nginx, default 5), NO_REPORT=1,
# OBJECT_STORE=0 (skip bench/object_store.sh, hftp over Garage against Garage),
# TLS=0 (skip bench/tls.sh, hftp over TLS against plain and nginx over TLS).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
RES=$OUT/results
DATA=$OUT/data
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  DUR=${DUR:-1}; CONNS=${CONNS:-"1 64"}; IDLE=${IDLE:-2000}; IDLE_OTHER=${IDLE_OTHER:-200}; HOLD_S=1; ROUNDS=${ROUNDS:-2}
else
  DUR=${DUR:-3}; CONNS=${CONNS:-"1 16 64 256 1024"}; IDLE=${IDLE:-10000}; IDLE_OTHER=${IDLE_OTHER:-1000}; HOLD_S=5; ROUNDS=${ROUNDS:-5}
fi
MODELS=${MODELS:-"async threads pool fork poll uring"}
M64=67108864
G1=1073741824
T0=$(date +%s)

log() { printf '\033[1m== %s\033[0m (%ss)\n' "$*" "$(( $(date +%s) - T0 ))" >&2; }

# --- tools -----------------------------------------------------------------
missing=()
for tool in nginx wrk iperf3 curl python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts nginx as a service on install: it is not ours to measure.
  (systemctl stop nginx || service nginx stop || nginx -s stop) >/dev/null 2>&1 || true
fi

# The charts are drawn by matplotlib: pip where python3 is its own (pyenv,
# a venv), Debian's package where the system's python3 refuses pip (PEP 668).
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  log "installing matplotlib"
  python3 -m pip install -q matplotlib 2>/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-matplotlib >/dev/null; }
fi

# Many connections need many descriptors (the hftp processes raise their own limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- build -----------------------------------------------------------------
if [ -n "${HFTP_BIN:-}" ]; then
  HFTP=$HFTP_BIN
else
  log "cargo build --release -p hftp-cli"
  cargo build --release -p hftp-cli
  HFTP=$ROOT/target/release/hftp
fi

rm -rf "$RES"
mkdir -p "$RES" "$DATA" "$OUT/logs"

# --- data ------------------------------------------------------------------
make_file() { # name size
  if [ "$(stat -c %s "$DATA/$1" 2>/dev/null || echo 0)" != "$2" ]; then
    head -c "$2" /dev/urandom > "$DATA/$1.tmp" && mv "$DATA/$1.tmp" "$DATA/$1"
  fi
}
log "test files"
make_file k1 1024
make_file m64 $M64
make_file g1 $G1
cat "$DATA/m64" "$DATA/g1" > /dev/null   # into the page cache

# --- machine ---------------------------------------------------------------
python3 - "$OUT/machine.json" <<'EOF'
import json, os, platform, subprocess, sys
def sh(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if (r.stdout.strip() or r.stderr.strip()) else ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
json.dump({
    "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "mem_gib": round(mem / 2**20, 1),
    "loadavg_start": open("/proc/loadavg").read().split()[:3],
    "rustc": sh("rustc -V"), "nginx": sh("nginx -v 2>&1"), "wrk": sh("wrk -v 2>&1 | head -1"),
    "iperf3": sh("iperf3 -v | head -1"), "python": sh("python3 --version"),
}, open(sys.argv[1], "w"), indent=1)
EOF

# --- helpers ---------------------------------------------------------------
# start_server, stop_server, SPID, ADDR (and a trap, replaced by cleanup below).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/bench/lib.sh"
start_hftp() { # model
  start_server "$OUT/logs/serve-$1.log" "$HFTP" serve -d "$DATA" -p 0 -a 127.0.0.1 --model "$1" -q
}
start_python() {
  start_server "$OUT/logs/python.log" python3 "$ROOT/bench/baselines/hftp_server.py" -d "$DATA" -p 0 -a 127.0.0.1
}
cleanup() { stop_server; [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null; true; }
trap cleanup EXIT

hb() { # id args... : one `hftp bench` run, JSON kept even when requests failed
  local id=$1; shift
  "$HFTP" bench "$ADDR" "$@" --json -q > "$RES/$id.json" 2> "$OUT/logs/$id.err" || true
  [ -s "$RES/$id.json" ] || { rm -f "$RES/$id.json"; echo "  $id: no result ($(head -c 300 "$OUT/logs/$id.err"))" >&2; }
}

# --- references ------------------------------------------------------------
log "base64 encoder, one core"
"$HFTP" bench --base64-speed --json > "$RES/ref-base64.json"

log "iperf3 over loopback"
iperf3 -s -p 5299 -B 127.0.0.1 > "$OUT/logs/iperf3-server.log" 2>&1 &
IPERF_PID=$!
for _ in $(seq 200); do ss -Hltn 'sport = :5299' 2>/dev/null | grep -q . && break; sleep 0.05; done
for _ in 1 2 3; do iperf3 -c 127.0.0.1 -p 5299 -t "$DUR" -J > "$RES/ref-iperf3.json" 2>/dev/null && break; sleep 0.5; done
kill "$IPERF_PID" 2>/dev/null || true; wait "$IPERF_PID" 2>/dev/null || true

log "nginx"
NGX=$OUT/nginx
mkdir -p "$NGX"
nginx_conf "$NGX" "$DATA" "listen 127.0.0.1:18080 backlog=4096;"
nginx -c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/error.log" &
NGINX_PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18080/k1 && break; sleep 0.05; done
wrk_run() { # id conns args...
  local id=$1 c=$2; shift 2
  local t=$(( c < 2 ? 1 : 2 ))
  wrk -t"$t" -c"$c" -d"${DUR}s" -s "$ROOT/bench/wrk_json.lua" "$@" > "$OUT/logs/$id.txt" 2>&1 || true
  grep '^{' "$OUT/logs/$id.txt" | tail -1 | python3 -c "import json,sys; d=json.load(sys.stdin); d['conns']=$c; print(json.dumps(d))" > "$RES/$id.json" || rm -f "$RES/$id.json"
}
for c in $CONNS; do
  wrk_run "ref-nginx-k1-c$c" "$c" http://127.0.0.1:18080/k1
done
for c in $CONNS; do
  wrk_run "ref-nginx-range64-c$c" "$c" -H "Range: bytes=0-$((M64 - 1))" http://127.0.0.1:18080/m64
done
kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=""

# --- hftp, every model -----------------------------------------------------
for model in $MODELS; do
  log "hftp --model $model"
  start_hftp "$model"
  for c in $CONNS; do
    hb "hftp-$model-metadata-c$c" metadata:k1 -c "$c" -d "$DUR" --server-pid "$SPID"
    hb "hftp-$model-slice1k-c$c" slice:k1:0:1024 -c "$c" -d "$DUR" --server-pid "$SPID"
    hb "hftp-$model-b64m64-c$c" slice:m64:0:$M64 -c "$c" -d "$DUR" --server-pid "$SPID"
    hb "hftp-$model-rawm64-c$c" raw:m64:0:$M64 -c "$c" -d "$DUR" --server-pid "$SPID"
  done
  # Memory tests on a fresh server: the allocator keeps what earlier loads used.
  stop_server; start_hftp "$model"
  case $model in async|poll|uring) n=$IDLE ;; *) n=$IDLE_OTHER ;; esac
  pss=(); [ "$model" = fork ] && pss=(--pss)
  hb "hftp-$model-hold" --hold "$n" -d "$HOLD_S" --server-pid "$SPID" --timeout 60 "${pss[@]}"
  stop_server; start_hftp "$model"
  # RSS growth while one 1 GiB slice streams (PSS too: fair for fork's children).
  hb "hftp-$model-b64g1" slice:g1:0:$G1 -n 1 --server-pid "$SPID" --pss --timeout 120
  if [ "$model" = async ]; then
    # Is the generator the bottleneck? Same load from 1, 2 and 4 generator threads,
    # and with 16 requests pipelined per connection.
    for t in 1 2 4; do
      hb "gen-async-metadata-c64-t$t" metadata:k1 -c 64 -t "$t" -d "$DUR" --server-pid "$SPID"
    done
    hb "gen-async-metadata-c64-k16" metadata:k1 -c 64 -k 16 -d "$DUR" --server-pid "$SPID"
    hb "extra-async-churn-c16" churn -c 16 -d "$DUR" --server-pid "$SPID"
    hb "extra-async-mixed-c64" "mixed:metadata:k1=8,slice:k1:0:1024=2" -c 64 -d "$DUR" --server-pid "$SPID"
  fi
  stop_server
done

# --- one connection, in rounds ----------------------------------------------
# The one-connection targets compare hftp with iperf3 and nginx: each round
# measures the references and every model back to back, so a change in what
# else runs on the cores hits them alike; the report takes medians and
# spreads over the rounds.
iperf3 -s -p 5299 -B 127.0.0.1 > "$OUT/logs/iperf3-server-rounds.log" 2>&1 &
IPERF_PID=$!
for _ in $(seq 200); do ss -Hltn 'sport = :5299' 2>/dev/null | grep -q . && break; sleep 0.05; done
nginx -c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/error.log" &
NGINX_PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18080/k1 && break; sleep 0.05; done
for round in $(seq "$ROUNDS"); do
  log "one connection, round $round/$ROUNDS"
  iperf3 -c 127.0.0.1 -p 5299 -t "$DUR" -J > "$RES/r1-iperf3-r$round.json" 2>/dev/null || rm -f "$RES/r1-iperf3-r$round.json"
  wrk_run "r1-nginx-range64-r$round" 1 -H "Range: bytes=0-$((M64 - 1))" http://127.0.0.1:18080/m64
  for model in $MODELS; do
    start_hftp "$model"
    hb "r1-hftp-$model-b64m64-r$round" slice:m64:0:$M64 -c 1 -d "$DUR" --server-pid "$SPID"
    hb "r1-hftp-$model-rawm64-r$round" raw:m64:0:$M64 -c 1 -d "$DUR" --server-pid "$SPID"
    stop_server
  done
done
kill "$IPERF_PID" "$NGINX_PID" 2>/dev/null || true; wait "$IPERF_PID" "$NGINX_PID" 2>/dev/null || true; NGINX_PID=""

# --- the Python baseline ---------------------------------------------------
log "python baseline"
start_python
for c in 1 16 64; do
  hb "py-metadata-c$c" metadata:k1 -c "$c" -d "$DUR" --server-pid "$SPID"
done
hb "py-slice1k-c64" slice:k1:0:1024 -c 64 -d "$DUR" --server-pid "$SPID"
hb "py-b64m64-c1" slice:m64:0:$M64 -c 1 -d $(( DUR * 2 )) --server-pid "$SPID"
stop_server; start_python
hb "py-hold" --hold "$IDLE_OTHER" -d "$HOLD_S" --server-pid "$SPID" --timeout 60
stop_server; start_python
hb "py-b64g1" slice:g1:0:$G1 -n 1 --server-pid "$SPID" --timeout 120
stop_server

# --- over an object store ------------------------------------------------------
if [ "${OBJECT_STORE:-1}" = 1 ]; then
  log "object store (bench/object_store.sh)"
  HFTP_BIN=$HFTP bash "$ROOT/bench/object_store.sh"
fi

# --- over TLS ------------------------------------------------------------------
if [ "${TLS:-1}" = 1 ]; then
  log "TLS (bench/tls.sh)"
  HFTP_BIN=$HFTP DUR=$DUR bash "$ROOT/bench/tls.sh"
fi

python3 - "$OUT/machine.json" "$T0" <<'EOF'
import json, sys, time
m = json.load(open(sys.argv[1]))
m["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
m["suite_seconds"] = int(time.time()) - int(sys.argv[2])
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF

if [ "${NO_REPORT:-0}" != 1 ]; then
  log "BENCHMARKS.md and charts"
  python3 "$ROOT/bench/report.py" --out "$OUT" --md "$ROOT/BENCHMARKS.md" --charts "$ROOT/bench/charts"
fi
log "done"
