#!/usr/bin/env bash
# hftp over an object store against the store itself, on one Garage cluster:
#
#   bash bench/object_store.sh        (about 4 minutes; `bench/run.sh` runs it last)
#
# Starts a 3-node Garage cluster (replication_factor = 3) on loopback, puts
# a 256 MiB object twice (m256 with a CRC32 the store keeps, as AWS keeps a
# CRC for every new object; m256md5 with none, its ETag's MD5 the only
# promise), and measures on that cluster, in one run:
#   - a direct ranged GET of the whole object (curl --aws-sigv4) against
#     the same bytes as hftp raw and base64 slices (`hftp bench`), one
#     connection each, through a node of `hftp serve --storage s3://...`
#     (raw slices also through a second node with --s3-splice false: the
#     streamed read the splice replaced; base64 slices of both objects:
#     the whole-object check against the store's CRC, and against the MD5),
#     interleaved round by round (medians reported), and the same GET
#     through HAProxy in tcp mode: what one extra hop costs by itself;
#   - HEAD requests per second, direct (curl, 16 in parallel), against
#     get_metadata per second through hftp (16 connections);
#   - the latency of one request, sequential, direct against through hftp
#     (HEAD against get_metadata, a 1 KiB ranged GET against a 1 KiB raw
#     slice): what the extra hop costs;
#   - the CPU time each 256 MiB transfer costs, by part (Garage, the relay,
#     the client).
# The hftp nodes and curl talk to the same Garage node. Results go to
# bench/out/results-s3/s3.json, which bench/report.py puts in BENCHMARKS.md.
#
# Environment: HFTP_BIN (use this binary, skip the build), RUNS (rounds of GET,
# raw and base64, default 5), HEADS (HEAD requests per figure, default 4000), MODEL
# (the hftp node's --model, default async).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
RES=$OUT/results-s3
WORK=$OUT/garage
RUNS=${RUNS:-5}
HEADS=${HEADS:-4000}
MODEL=${MODEL:-async}
SIZE=$((256 * 1024 * 1024))
GARAGE_VERSION=2.5.0
T0=$(date +%s)
log() { printf '\033[1m== %s\033[0m (%ss)\n' "$*" "$(( $(date +%s) - T0 ))" >&2; }
# start_server (the hftp nodes), SPID, ADDR; its trap is replaced by cleanup below.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/bench/lib.sh"

# --- tools -----------------------------------------------------------------
export PATH=$HOME/.cargo/bin:$PATH
if ! garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
  log "cargo install garage $GARAGE_VERSION (10 to 25 minutes on 2 cores)"
  cargo install garage --locked --version "$GARAGE_VERSION"
fi
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
if [ -n "${HFTP_BIN:-}" ]; then
  HFTP=$HFTP_BIN
else
  log "cargo build --release -p hftp-cli"
  cargo build --release -p hftp-cli
  HFTP=$ROOT/target/release/hftp
fi

# --- the cluster -----------------------------------------------------------
KEY_ID=GK0123456789abcdef01234567
SECRET=5ee0f9c1d2b3a4958677a8b9cadbecfd0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7
RPC_SECRET=6d0c3f3a2b1e4f5a8b7c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c
BUCKET=hftp
PIDS=()
cleanup() { # the hftp nodes are in PIDS too
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

for port in 13910 13911 13920 13921 13930 13931 13940; do
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    echo "port $port is taken: stop what listens there first" >&2; exit 1
  fi
done
rm -rf "$WORK" "$RES"
mkdir -p "$WORK" "$RES"
for i in 1 2 3; do
  d=$WORK/node$i
  mkdir -p "$d/meta" "$d/data"
  cat > "$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:139${i}1"
rpc_public_addr = "127.0.0.1:139${i}1"
rpc_secret = "$RPC_SECRET"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:139${i}0"
EOF
  chmod 600 "$d/garage.toml"
  RUST_LOG=garage=warn garage -c "$d/garage.toml" server > "$d/log" 2>&1 &
  PIDS+=($!)
done
g() { RUST_LOG=garage=warn garage -c "$WORK/node1/garage.toml" "$@"; }
eventually() { # command...: retried for up to 60 s (the layout takes a moment to spread)
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "kept failing: $*" >&2; "$@"; return 1
}
log "garage: 3 nodes, replication_factor = 3"
for i in 1 2 3; do
  eventually env RUST_LOG=garage=warn garage -c "$WORK/node$i/garage.toml" status
done
for i in 2 3; do
  id=$(RUST_LOG=garage=warn garage -c "$WORK/node$i/garage.toml" node id -q)
  g node connect "$id" >/dev/null
done
for i in 1 2 3; do
  id=$(RUST_LOG=garage=warn garage -c "$WORK/node$i/garage.toml" node id -q)
  g layout assign -z dc1 -c 1G "${id%%@*}" >/dev/null
done
g layout apply --version 1 >/dev/null
eventually g key import --yes -n bench "$KEY_ID" "$SECRET"
eventually g bucket create "$BUCKET"
eventually g bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID"

EP=http://127.0.0.1:13910
URL=$EP/$BUCKET/bench/m256
# Garage wants the payload hash header, which curl leaves out: unsigned.
s3curl() { curl -sS --fail --aws-sigv4 "aws:amz:garage:s3" --user "$KEY_ID:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
head -c "$SIZE" /dev/urandom > "$WORK/m256"
# S3 sends a CRC as base64 of its big-endian value.
CRC32=$(python3 -c 'import base64, sys, zlib
crc = 0
with open(sys.argv[1], "rb") as f:
    while chunk := f.read(1 << 20):
        crc = zlib.crc32(chunk, crc)
print(base64.b64encode(crc.to_bytes(4, "big")).decode())' "$WORK/m256")
log "PUT 256 MiB twice: with x-amz-checksum-crc32, and without"
eventually s3curl -T "$WORK/m256" -H "x-amz-checksum-crc32: $CRC32" "$URL"
eventually s3curl -T "$WORK/m256" "${URL}md5"
rm -f "$WORK/m256"

# --- the reference relay: HAProxy, tcp mode, in front of the same node -----
cat > "$WORK/haproxy.cfg" <<EOF
global
  maxconn 64
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend s3
  bind 127.0.0.1:13940
  default_backend garage
backend garage
  server node1 127.0.0.1:13910
EOF
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
RELAY_URL=http://127.0.0.1:13940/$BUCKET/bench/m256
eventually s3curl -I "$RELAY_URL"

# --- the hftp nodes ------------------------------------------------------------
# One as deployed (raw slices spliced from Garage's socket), one with
# --s3-splice false (raw slices streamed through object_store): the two ways
# of the same bytes, measured in the same rounds.
start_node() { # log splice: starts a node; sets SPID and ADDR
  start_server "$1" env AWS_ENDPOINT_URL="$EP" AWS_ALLOW_HTTP=true AWS_REGION=garage HFTP_S3_SPLICE="$2" \
    AWS_ACCESS_KEY_ID="$KEY_ID" AWS_SECRET_ACCESS_KEY="$SECRET" \
    "$HFTP" serve --storage "s3://$BUCKET/bench" --model "$MODEL" -a 127.0.0.1 -p 0 -q
  PIDS+=("$SPID")
}
start_node "$WORK/serve.log" true
NODE_PID=$SPID NODE_ADDR=$ADDR
start_node "$WORK/serve-streamed.log" false
STREAMED_PID=$SPID STREAMED_ADDR=$ADDR
SPID=$NODE_PID ADDR=$NODE_ADDR

# --- measurements ----------------------------------------------------------
# Interleaved, one of each per round, in a rotating order: a change in
# what else runs on the shared cores hits the direct GET and the slices
# alike.
# Each transfer also records the CPU time it cost, by part: the Garage
# nodes, the relay (HAProxy or the hftp node; none for the direct GET) and
# the client: what the extra hop costs the machine.
GARAGE_PIDS=("${PIDS[@]:0:3}")
ticks() { # pid...: their user + system CPU time so far, in clock ticks
  local sum=0 p f
  for p in "$@"; do
    read -r -a f < "/proc/$p/stat"
    sum=$((sum + f[13] + f[14]))
  done
  echo "$sum"
}
HZ=$(getconf CLK_TCK)
measured() { # label relay-pid|- command...: runs it, appends its CPU time to cpu.txt
  local label=$1 relay=$2 g0 r0=0 r1=0 client
  shift 2
  g0=$(ticks "${GARAGE_PIDS[@]}")
  [ "$relay" = - ] || r0=$(ticks "$relay")
  { TIMEFORMAT='%U %S'; time "$@" 2>&3; } 3>&2 2> "$WORK/time.txt"
  client=$(cat "$WORK/time.txt")
  [ "$relay" = - ] || r1=$(ticks "$relay")
  echo "$label $(( $(ticks "${GARAGE_PIDS[@]}") - g0 )) $((r1 - r0)) $HZ $client" >> "$RES/cpu.txt"
}
log "256 MiB: direct ranged GET, the same through HAProxy, hftp raw slices (spliced, and streamed on a second node) and base64 slices; $RUNS rounds"
: > "$RES/direct-get.txt"; : > "$RES/relay-get.txt"; : > "$RES/cpu.txt"
whole_get() { # label relay-pid|- url: one ranged GET of the whole object, its times appended to LABEL-get.txt
  measured "$1" "$2" s3curl -r "0-$((SIZE - 1))" -o /dev/null \
    -w '%{size_download} %{time_total} %{time_starttransfer}\n' "$3" >> "$RES/$1-get.txt"
}
direct_get() { whole_get direct - "$URL"; }
relay_get() { whole_get relay "${PIDS[3]}" "$RELAY_URL"; }
raw_slice() { measured raw "$SPID" "$HFTP" bench "$ADDR" "raw:m256:0:$SIZE" -c 1 -n 1 --server-pid "$SPID" --timeout 120 --json -q > "$RES/hftp-raw-r$1.json"; }
streamed_slice() { measured streamed "$STREAMED_PID" "$HFTP" bench "$STREAMED_ADDR" "raw:m256:0:$SIZE" -c 1 -n 1 --server-pid "$STREAMED_PID" --timeout 120 --json -q > "$RES/hftp-streamed-r$1.json"; }
b64_slice() { measured b64 "$SPID" "$HFTP" bench "$ADDR" "slice:m256:0:$SIZE" -c 1 -n 1 --server-pid "$SPID" --timeout 120 --json -q > "$RES/hftp-b64-r$1.json"; }
b64_md5_slice() { measured b64md5 "$SPID" "$HFTP" bench "$ADDR" "slice:m256md5:0:$SIZE" -c 1 -n 1 --server-pid "$SPID" --timeout 120 --json -q > "$RES/hftp-b64md5-r$1.json"; }
TRANSFERS=(direct_get relay_get raw_slice streamed_slice b64_slice b64_md5_slice)
for r in $(seq "$RUNS"); do
  # Each round starts one further along the list: no transfer always
  # follows the same one.
  for k in "${!TRANSFERS[@]}"; do
    "${TRANSFERS[$(( (r + k) % ${#TRANSFERS[@]} ))]}" "$r"
  done
done

heads() { # count: a curl config of that many HEAD requests
  for _ in $(seq "$1"); do printf 'url = "%s"\n' "$URL"; done
}
heads "$HEADS" > "$WORK/heads.cfg"
log "HEAD, $HEADS requests, 16 in parallel"
t=$(date +%s%N)
s3curl -I -Z --parallel-max 16 -K "$WORK/heads.cfg" > /dev/null
echo "$HEADS $(( $(date +%s%N) - t ))" > "$RES/direct-head-parallel.txt"
log "get_metadata through hftp, 16 connections"
"$HFTP" bench "$ADDR" metadata:m256 -c 16 -d 5 --server-pid "$SPID" --json -q > "$RES/hftp-metadata-c16.json"

log "one request at a time: HEAD direct, get_metadata through hftp"
heads 1000 > "$WORK/heads1.cfg"
t=$(date +%s%N)
s3curl -I -K "$WORK/heads1.cfg" > /dev/null
echo "1000 $(( $(date +%s%N) - t ))" > "$RES/direct-head-serial.txt"
"$HFTP" bench "$ADDR" metadata:m256 -c 1 -d 5 --server-pid "$SPID" --json -q > "$RES/hftp-metadata-c1.json"

log "one 1 KiB slice at a time: ranged GET direct, raw slice through hftp"
t=$(date +%s%N)
s3curl -r 0-1023 -K "$WORK/heads1.cfg" > /dev/null
echo "1000 $(( $(date +%s%N) - t ))" > "$RES/direct-small-get-serial.txt"
"$HFTP" bench "$ADDR" raw:m256:0:1024 -c 1 -d 5 --server-pid "$SPID" --json -q > "$RES/hftp-small-slice-c1.json"

python3 - "$RES" "$RUNS" <<'EOF'
import json, os, statistics, sys
res, rounds = sys.argv[1], int(sys.argv[2])
def runs(name):
    return [l.split() for l in open(os.path.join(res, name)) if l.strip()]
hj = lambda name: json.load(open(os.path.join(res, name)))
get = [int(n) / float(t) / 1e6 for n, t, _ in runs("direct-get.txt")]
relay = [int(n) / float(t) / 1e6 for n, t, _ in runs("relay-get.txt")]
raws = [hj("hftp-raw-r%d.json" % r) for r in range(1, rounds + 1)]
b64s = [hj("hftp-b64-r%d.json" % r) for r in range(1, rounds + 1)]
b64md5s = [hj("hftp-b64md5-r%d.json" % r) for r in range(1, rounds + 1)]
streameds = [hj("hftp-streamed-r%d.json" % r) for r in range(1, rounds + 1)]
streamed = [d["payload_mbps"] for d in streameds]
raw = [d["payload_mbps"] for d in raws]
b64 = [d["payload_mbps"] for d in b64s]
b64md5 = [d["payload_mbps"] for d in b64md5s]
(n, t), = runs("direct-head-parallel.txt")
(n1, t1), = runs("direct-head-serial.txt")
m16, m1 = hj("hftp-metadata-c16.json"), hj("hftp-metadata-c1.json")
(ns, ts), = runs("direct-small-get-serial.txt")
small = hj("hftp-small-slice-c1.json")
rss = max((((d.get("server") or {}).get("peak") or {}).get("rss_kib") or 0) for d in raws + streameds + b64s + b64md5s)
out = {
    "rounds": rounds,
    "direct_get_mbps": statistics.median(get),
    "direct_get_runs_mbps": get,
    "hftp_raw_mbps": statistics.median(raw),
    "hftp_raw_runs_mbps": raw,
    "hftp_streamed_raw_mbps": statistics.median(streamed),
    "hftp_streamed_raw_runs_mbps": streamed,
    "streamed_ratio_runs": [r / g for r, g in zip(streamed, get)],
    "hftp_b64_mbps": statistics.median(b64),
    "hftp_b64_runs_mbps": b64,
    "hftp_b64_md5_mbps": statistics.median(b64md5),
    "hftp_b64_md5_runs_mbps": b64md5,
    # Each round's base64 slice against that round's raw slice.
    "b64_raw_ratio_runs": [b / r for b, r in zip(b64, raw)],
    "relay_get_mbps": statistics.median(relay),
    "relay_get_runs_mbps": relay,
    # Each round's raw slice (and relayed GET) against that round's GET.
    "raw_ratio_runs": [r / g for r, g in zip(raw, get)],
    "relay_ratio_runs": [r / g for r, g in zip(relay, get)],
    # Time to the first byte of the direct GET (the store's own latency).
    "direct_get_ttfb_ms": statistics.median(float(f) * 1000 for _, _, f in runs("direct-get.txt")),
    "hftp_errors": sum(d["errors"] for d in raws + streameds + b64s + b64md5s) + m16["errors"] + m1["errors"] + small["errors"],
    "direct_head_rps": int(n) / (int(t) / 1e9),
    "hftp_metadata_rps": m16["rps"],
    "direct_head_latency_ms": int(t1) / 1e6 / int(n1),
    "hftp_metadata_latency_ms": m1["latency_us"]["mean"] / 1000,
    "hftp_metadata_p99_ms": m1["latency_us"]["p99"] / 1000,
    "direct_small_get_latency_ms": int(ts) / 1e6 / int(ns),
    "hftp_small_slice_latency_ms": small["latency_us"]["mean"] / 1000,
    "hftp_server_rss_peak_mib": rss / 1024,
}
# CPU seconds one 256 MiB transfer costs, by part (medians over the rounds).
cpu = {}
for label, garage, relay, hz, user, system in runs("cpu.txt"):
    cpu.setdefault(label, []).append(
        (int(garage) / int(hz), int(relay) / int(hz), float(user) + float(system)))
out["cpu_s"] = {
    label: {part: statistics.median(r[i] for r in rows)
            for i, part in enumerate(("garage", "relay", "client"))}
    for label, rows in cpu.items()
}
for parts in out["cpu_s"].values():
    parts["total"] = sum(parts.values())
json.dump(out, open(os.path.join(res, "s3.json"), "w"), indent=1)
print(json.dumps(out, indent=1))
EOF
log "done"
