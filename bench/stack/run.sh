#!/usr/bin/env bash
# Step 1 of the server work: which HTTP stack to build on. Each candidate answers POST with
# orjson.loads of the 5.6 KB AdmissionReview and a small JSON, over HTTPS with keep-alive;
# wrk drives it from one thread at 16 connections and at 1. Results: docs/server.md.
#
#   pip install uvicorn granian   # candidates only; not project dependencies
#   bench/stack/run.sh [seconds] [rounds]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-8}
rounds=${2:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
shared=$(cd "$here/../../../shared/bench" && pwd)  # the shared bench kit beside the checkout
python3 "$shared/make_review.py" "$tmp/review.json" >/dev/null
lua=$shared/post.lua
cd "$here"
bench() {  # name port cmd...
  local name=$1 port=$2; shift 2
  "$@" >"$tmp/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -sk -o /dev/null -H 'Content-Type: application/json' -d '{"request":{"uid":"a"}}' \
      "https://127.0.0.1:$port/" && break
    sleep 0.1
  done
  for c in 16 1; do
    out=$(REVIEW="$tmp/review.json" wrk -t1 -c$c -d${secs}s --latency -s "$lua" "https://127.0.0.1:$port/mutate")
    printf '%-16s c=%-3s %9s req/s  p50 %-9s p99 %s\n' "$name" "$c" \
      "$(grep -oP 'Requests/sec:\s+\K[\d.]+' <<<"$out")" \
      "$(grep -oP '^\s+50%\s+\K\S+' <<<"$out")" "$(grep -oP '^\s+99%\s+\K\S+' <<<"$out")"
  done
  kill $pid; wait $pid 2>/dev/null || true
}
for _ in $(seq "$rounds"); do
  bench protocol-uvloop 9101 python3 proto_server.py 9101 "$tmp/cert.pem" "$tmp/key.pem"
  bench protocol-asyncio 9102 python3 proto_server.py 9102 "$tmp/cert.pem" "$tmp/key.pem" asyncio
  bench uvicorn 9103 uvicorn asgi_app:app --port 9103 --host 127.0.0.1 --ssl-certfile "$tmp/cert.pem" \
    --ssl-keyfile "$tmp/key.pem" --loop uvloop --http httptools --no-access-log --log-level warning
  bench granian-rsgi 9104 granian --interface rsgi rsgi_app:app --port 9104 --host 127.0.0.1 \
    --ssl-certificate "$tmp/cert.pem" --ssl-keyfile "$tmp/key.pem" --workers 1 --no-ws --http 1 --log-level warning
  bench granian-asgi 9105 granian --interface asgi asgi_app:app --port 9105 --host 127.0.0.1 \
    --ssl-certificate "$tmp/cert.pem" --ssl-keyfile "$tmp/key.pem" --workers 1 --no-ws --http 1 --log-level warning
done
