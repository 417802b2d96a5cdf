# shellcheck shell=bash
# Sourced by the bench scripts (run.sh, ab.sh, object_store.sh): starting a
# server and stopping it, said once.
#
#   start_server LOG COMMAND...   runs COMMAND (`hftp serve ... -p 0`, or the
#                                 Python baseline) in the background, output
#                                 to LOG, and waits for its "listening on
#                                 ADDR" line: sets SPID and ADDR
#   stop_server                   stops SPID (TERM, KILL after 15 s)
#   nginx_conf DIR ROOT SERVER... writes DIR/nginx.conf: nginx in the
#                                 foreground serving ROOT, tuned as the
#                                 benchmarks compare it, with the lines
#                                 SERVER... (a `listen`, TLS settings) in
#                                 its server block
#
# Sourcing it also sets `trap stop_server EXIT`; a script with more to clean
# up sets its own trap, which calls stop_server.

SPID=""
ADDR=""

# Returns 1 (the log on stderr, the server stopped) when COMMAND exits or
# does not say where it listens within 10 s.
start_server() { # log command...
  local log=$1
  shift
  "$@" > "$log" 2>&1 &
  SPID=$!
  ADDR=""
  for _ in $(seq 200); do
    ADDR=$(grep -o 'listening on [0-9.]*:[0-9]*' "$log" 2>/dev/null | head -1 | awk '{print $3}') || true
    [ -n "$ADDR" ] && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  echo "server did not start; log:" >&2
  cat "$log" >&2
  stop_server
  return 1
}

stop_server() {
  [ -n "$SPID" ] || return 0
  kill -TERM "$SPID" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=""
}

trap stop_server EXIT

nginx_conf() { # dir root server-lines...
  local dir=$1 root=$2
  shift 2
  local lines
  lines=$(printf '    %s\n' "$@")
  cat > "$dir/nginx.conf" <<CONF
user root;
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000000;
  keepalive_timeout 300;
  default_type application/octet-stream;
  server {
$lines
    root $root;
  }
}
CONF
}
