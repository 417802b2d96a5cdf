#!/usr/bin/env bash
# Two builds of the server side by side, on the same machine, in one run:
#
#   bash bench/ab.sh OLD_HFTP NEW_HFTP          (about 6 minutes)
#
# For each model and load, the old server then the new one, ROUNDS times
# interleaved (a change in what else runs on the cores hits both alike);
# prints, per load and model, the median of each, the ratio new/old, and
# the same per server CPU-second (which does not depend on the share of the
# cores the server got), and each build's spread (half the range of its runs
# over their median: a ratio inside it is noise). Both are loaded by NEW's `hftp bench`. Raw JSON in
# bench/out/ab/. Build the old one in a worktree, e.g.
#   git worktree add /tmp/old COMMIT && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p hftp-cli)
#
# Environment: MODELS (default: async threads pool fork poll), ROUNDS (3),
# OLD_LABEL and NEW_LABEL (how BENCHMARKS.md names the builds, e.g. commits),
# DUR (seconds per load, 2); NEW_SERVE and NEW_BENCH, extra arguments of
# the new side's `serve` and of the `bench` loading it. The same binary on
# both sides with TLS on the new one measures what TLS costs:
#   NEW_SERVE="--tls-cert cert.pem --tls-key key.pem" NEW_BENCH="--cacert cert.pem" \
#     bash bench/ab.sh target/release/hftp target/release/hftp
# (with a certificate for 127.0.0.1; the bench side then adds --tls).
set -euo pipefail

[ $# -eq 2 ] || { sed -n 2,21p "$0" >&2; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2")
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out/ab
DATA=$ROOT/bench/out/data
MODELS=${MODELS:-"async threads pool fork poll"}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-2}
NEW_SERVE=${NEW_SERVE:-}
NEW_BENCH=${NEW_BENCH:-}
[ -z "$NEW_BENCH" ] || NEW_BENCH="--tls $NEW_BENCH"
M64=67108864
LOADS=(
  "metadata-c1|metadata:k1 -c 1"
  "metadata-c64|metadata:k1 -c 64"
  "slice1k-c64|slice:k1:0:1024 -c 64"
  "b64m64-c1|slice:m64:0:$M64 -c 1"
  "rawm64-c1|raw:m64:0:$M64 -c 1"
)
rm -rf "$OUT"; mkdir -p "$OUT" "$DATA"
[ -s "$DATA/k1" ] || head -c 1024 /dev/urandom > "$DATA/k1"
[ "$(stat -c %s "$DATA/m64" 2>/dev/null || echo 0)" = $M64 ] || head -c $M64 /dev/urandom > "$DATA/m64"
cat "$DATA/m64" > /dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# start_server, stop_server, SPID, ADDR, and the trap that stops the server.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/bench/lib.sh"

for round in $(seq "$ROUNDS"); do
  for model in $MODELS; do
    for side in old new; do
      bin=$OLD; serve_extra=""; bench_extra=""
      [ $side = new ] && { bin=$NEW; serve_extra=$NEW_SERVE; bench_extra=$NEW_BENCH; }
      # shellcheck disable=SC2086
      start_server "$OUT/serve-$side-$model.log" "$bin" serve -d "$DATA" -p 0 -a 127.0.0.1 --model "$model" -q $serve_extra
      for entry in "${LOADS[@]}"; do
        id=${entry%%|*}; args=${entry#*|}
        # shellcheck disable=SC2086
        "$NEW" bench "$ADDR" $args $bench_extra -d "$DUR" --server-pid "$SPID" --json -q \
          > "$OUT/$side-$model-$id-r$round.json" 2>/dev/null || true
      done
      stop_server
    done
    printf 'round %s/%s: %s\n' "$round" "$ROUNDS" "$model" >&2
  done
done

python3 - "$OUT" "$MODELS" "${OLD_LABEL:-$OLD}" "${NEW_LABEL:-$NEW}" "$ROUNDS" "$DUR" <<'EOF'
import glob, json, os, statistics, sys
out, models = sys.argv[1], sys.argv[2].split()
summary = {"old": sys.argv[3], "new": sys.argv[4], "rounds": int(sys.argv[5]), "dur": sys.argv[6], "rows": []}
loads = ["metadata-c1", "metadata-c64", "slice1k-c64", "b64m64-c1", "rawm64-c1"]
def runs(side, model, load):
    got = []
    for p in glob.glob(os.path.join(out, "%s-%s-%s-r*.json" % (side, model, load))):
        try:
            d = json.load(open(p))
        except ValueError:
            continue
        key = "payload_mbps" if "m64" in load else "rps"
        cpu = (d.get("server") or {}).get("cpu_s")
        got.append((d[key], d[key] * d["elapsed_s"] / cpu if cpu else None, d.get("errors", 0)))
    return got
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def f(v):
    return "—" if v is None else "{:,.0f}".format(v)
def r(a, b):
    return "—" if a is None or not b else "%.2f×" % (a / b)
def spread(xs):
    # How far apart the runs of one build are: the noise a ratio sits in.
    xs = [x for x in xs if x is not None]
    return "—" if len(xs) < 2 else "±%.0f%%" % (50 * (max(xs) - min(xs)) / statistics.median(xs))
print("| load | model | old | new | new/old | spread old / new | old per CPU-s | new per CPU-s | new/old per CPU-s |")
print("|---|---|---|---|---|---|---|---|---|")
for load in loads:
    unit = "MB/s" if "m64" in load else "req/s"
    for m in models:
        o, n = runs("old", m, load), runs("new", m, load)
        oa, na = med([x[0] for x in o]), med([x[0] for x in n])
        oc, nc = med([x[1] for x in o]), med([x[1] for x in n])
        errs = sum(x[2] for x in o + n)
        noise = "%s / %s" % (spread([x[0] for x in o]), spread([x[0] for x in n]))
        print("| %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s |%s" % (
            load, unit, m, f(oa), f(na), r(na, oa), noise, f(oc), f(nc), r(nc, oc),
            " %d errors" % errs if errs else ""))
        summary["rows"].append({"load": "%s (%s)" % (load, unit), "model": m, "old": oa, "new": na,
                                "spread": noise, "old_cpu": oc, "new_cpu": nc, "errors": errs})
# Read by bench/report.py ("Before and after").
with open(os.path.join(out, "summary.json"), "w") as fh:
    json.dump(summary, fh, indent=1)
EOF
