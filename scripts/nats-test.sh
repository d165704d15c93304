#!/usr/bin/env bash
# A throwaway NATS server with JetStream for trying `bsvp2p bridge` by hand (docs/FLEET.md).
#
#   scripts/nats-test.sh start DIR   starts `nats-server -js` on a free loopback port, storing in
#                                    DIR/js, logging to DIR/nats.log; prints NATS_URL=nats://...
#                                    (also written to DIR/env with NATS_PID)
#   scripts/nats-test.sh stop DIR    stops it (SIGTERM, then waits)
#
# Needs `nats-server` on PATH (Debian: apt-get install nats-server) or NATS_SERVER=/path.
# The test suite (nats/tests) starts servers of its own; this script is for people.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
bin=${NATS_SERVER:-$(command -v nats-server || true)}

case $cmd in
  start)
    if [ -z "$bin" ]; then
      echo "nats-server not found: apt-get install -y nats-server, or set NATS_SERVER" >&2
      exit 1
    fi
    mkdir -p "$dir/js"
    # A free port: bind port 0 and read what the kernel gave (released before the server binds).
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$bin" -js -a 127.0.0.1 -p "$port" -sd "$dir/js" >"$dir/nats.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        printf 'NATS_URL=nats://127.0.0.1:%s\nNATS_PID=%s\n' "$port" "$pid" >"$dir/env"
        echo "NATS_URL=nats://127.0.0.1:$port"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "nats-server exited; its log:" >&2
        cat "$dir/nats.log" >&2
        exit 1
      fi
      sleep 0.05
    done
    echo "nats-server did not listen on 127.0.0.1:$port within 5 s" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
  stop)
    if [ ! -f "$dir/env" ]; then
      echo "no server recorded in $dir/env" >&2
      exit 1
    fi
    pid=$(sed -n 's/^NATS_PID=//p' "$dir/env")
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done
    fi
    rm -f "$dir/env"
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
