#!/usr/bin/env bash
# HFTP over TLS against plain HFTP and against nginx over TLS, on the same
# files, in one run (issue: "past loopback safely"):
#
#   bash bench/tls.sh        (about 6 minutes; `bench/run.sh` runs it too)
#
# Makes a throwaway CA and a certificate for 127.0.0.1 with openssl, then,
# ROUNDS times, in the same order each round:
#   - nginx over TLS 1.3 (`wrk`): a 1 KiB GET at 64 connections, and one
#     64 MiB file by a ranged GET on one connection;
#   - `hftp serve --tls-cert ...` for each of MODELS (`hftp bench --tls`):
#     get_metadata at 64 connections, and 64 MiB raw and base64 slices on
#     one connection;
#   - the same hftp loads in clear text, on the same binary.
# Both sides negotiate TLS 1.3 with the client's first choice,
# TLS_AES_256_GCM_SHA384 (the script records what each server chose).
# nginx serves TLS with OpenSSL's copy path (no kTLS on a kernel without
# the `tls` module), as hftp does. Results: medians and spreads in
# bench/out/results-tls/tls.json, which bench/report.py puts in
# BENCHMARKS.md.
#
# Environment: HFTP_BIN (use this binary, skip the build), ROUNDS (default
# 3), DUR (seconds per load, default 3), MODELS (default "async poll uring").
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
RES=$OUT/results-tls
RAW=$RES/runs
DATA=$OUT/data-tls
PKI=$OUT/tls-pki
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-3}
MODELS=${MODELS:-"async poll uring"}
M64=67108864
T0=$(date +%s)
log() { printf '\033[1m== %s\033[0m (%ss)\n' "$*" "$(( $(date +%s) - T0 ))" >&2; }

missing=()
for tool in nginx wrk openssl curl python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  (systemctl stop nginx || service nginx stop || nginx -s stop) >/dev/null 2>&1 || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -n "${HFTP_BIN:-}" ]; then
  HFTP=$HFTP_BIN
else
  log "cargo build --release"
  cargo build --release -q -p hftp-cli
  HFTP=$ROOT/target/release/hftp
fi

rm -rf "$RES" "$PKI"
mkdir -p "$RAW" "$DATA" "$PKI" "$OUT/logs"
[ -s "$DATA/k1" ] || head -c 1024 /dev/urandom > "$DATA/k1"
[ -s "$DATA/m64" ] || head -c "$M64" /dev/urandom > "$DATA/m64"

log "a throwaway CA and a certificate for 127.0.0.1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=hftp bench CA" -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=127.0.0.1" -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$PKI/ext.cnf"
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
  -CAcreateserial -days 2 -extfile "$PKI/ext.cnf" -out "$PKI/server.pem" 2>/dev/null

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/bench/lib.sh"
NGX=$OUT/nginx-tls
NGINX_PID=""
cleanup() { stop_server; [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null; true; }
trap cleanup EXIT

mkdir -p "$NGX"
nginx_conf "$NGX" "$DATA" "listen 127.0.0.1:18443 ssl backlog=4096;" \
  "ssl_certificate $PKI/server.pem;" "ssl_certificate_key $PKI/server.key;" \
  "ssl_protocols TLSv1.3;"

cipher_of() { # host:port [alpn]
  local alpn=()
  [ -n "${2:-}" ] && alpn=(-alpn "$2")
  openssl s_client -connect "$1" "${alpn[@]}" -CAfile "$PKI/ca.pem" </dev/null 2>/dev/null \
    | awk '/^New, /{print $NF; exit}'
}

wrk_run() { # id conns args...
  local id=$1 c=$2; shift 2
  local t=$(( c < 2 ? 1 : 2 ))
  wrk -t"$t" -c"$c" -d"${DUR}s" -s "$ROOT/bench/wrk_json.lua" "$@" > "$OUT/logs/$id.txt" 2>&1 || true
  grep '^{' "$OUT/logs/$id.txt" | tail -1 > "$RAW/$id.json" || rm -f "$RAW/$id.json"
}

hb() { # id args...
  local id=$1; shift
  "$HFTP" bench "$ADDR" "$@" --json -q > "$RAW/$id.json" 2> "$OUT/logs/$id.err" || true
  [ -s "$RAW/$id.json" ] || { rm -f "$RAW/$id.json"; echo "  $id: no result ($(head -c 300 "$OUT/logs/$id.err"))" >&2; }
}

hftp_loads() { # prefix tls-args...
  local p=$1; shift
  hb "$p-metadata-c64" metadata:k1 -c 64 -d "$DUR" "$@"
  hb "$p-rawm64-c1" raw:m64:0:$M64 -c 1 -d "$DUR" "$@"
  hb "$p-b64m64-c1" slice:m64:0:$M64 -c 1 -d "$DUR" "$@"
}

NGINX_CIPHER=""
HFTP_CIPHER=""
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS: nginx over TLS"
  nginx -c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/error.log" &
  NGINX_PID=$!
  for _ in $(seq 100); do curl -sf --cacert "$PKI/ca.pem" -o /dev/null https://127.0.0.1:18443/k1 && break; sleep 0.05; done
  [ -n "$NGINX_CIPHER" ] || NGINX_CIPHER=$(cipher_of 127.0.0.1:18443)
  wrk_run "nginx-tls-k1-c64-r$round" 64 https://127.0.0.1:18443/k1
  wrk_run "nginx-tls-range64-c1-r$round" 1 -H "Range: bytes=0-$((M64 - 1))" https://127.0.0.1:18443/m64
  kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=""
  for model in $MODELS; do
    log "round $round of $ROUNDS: hftp --model $model, TLS and plain"
    start_server "$OUT/logs/tls-serve-$model.log" "$HFTP" serve -d "$DATA" -p 0 -a 127.0.0.1 \
      --model "$model" -q --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key"
    [ -n "$HFTP_CIPHER" ] || HFTP_CIPHER=$(cipher_of "$ADDR" hftp)
    hftp_loads "hftp-tls-$model-r$round" --tls --cacert "$PKI/ca.pem"
    stop_server
    start_server "$OUT/logs/plain-serve-$model.log" "$HFTP" serve -d "$DATA" -p 0 -a 127.0.0.1 \
      --model "$model" -q
    hftp_loads "hftp-plain-$model-r$round"
    stop_server
  done
done

log "summary"
python3 - "$RAW" "$RES/tls.json" "$ROUNDS" "$MODELS" "$NGINX_CIPHER" "$HFTP_CIPHER" <<'PY'
import glob, json, os, re, statistics, sys

raw, out, rounds, models, nginx_cipher, hftp_cipher = sys.argv[1:]
runs = {}
for path in glob.glob(os.path.join(raw, "*.json")):
    name = os.path.basename(path)[:-5]
    # The round is a "-rN" part of the name: runs of one load share a key.
    key = re.sub(r"-r\d+(?=-|$)", "", name)
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        continue
    if name.startswith("nginx-"):
        secs = d["duration_us"] / 1e6
        value = d["bytes"] / secs / 1e6 if "range64" in key else d["requests"] / secs
    else:
        value = d.get("payload_mbps") if ("m64" in key) else d.get("rps")
    if value:
        runs.setdefault(key, []).append(value)
summary = {
    key: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
    for key, v in sorted(runs.items())
}
with open(out, "w") as f:
    json.dump({"rounds": int(rounds), "models": models.split(), "nginx_cipher": nginx_cipher,
               "hftp_cipher": hftp_cipher, "loads": summary}, f, indent=1)
for key, s in summary.items():
    print(f"{key:32} median {s['median']:10.1f}  [{s['min']:.1f}–{s['max']:.1f}]")
PY
log "done: $RES/tls.json"
