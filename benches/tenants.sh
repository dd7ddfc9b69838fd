#!/usr/bin/env bash
# The many-tenants benchmark (issue 16). BENCH_TENANTS (default 10,000) tenants are created
# through the CLI, each with a SCIM admin (HTTP Basic); one in BENCH_TOKEN_EVERY (default 10)
# also gets a bearer token. `scimd serve` (release, default settings: max_open_tenants 256)
# starts with a soft open-file limit of 1,024, and bench-tenants touches random tenants for
# BENCH_SECONDS (default 180) over 16 connections, sampling RSS, threads and open files: first
# paced at BENCH_RATE (default 100) steps a second, then unpaced (saturating). Then
# the cost of /healthz, /metrics and `scimd tenant list` at that many tenants. Prints JSON
# lines (also in $BENCH_DIR/tenants.jsonl) for BENCHMARKS.md.
#
#   benches/tenants.sh
#   BENCH_TENANTS=2000 BENCH_SECONDS=60 benches/tenants.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_TENANTS:-10000}
RUN_SECONDS=${BENCH_SECONDS:-180}
TOKEN_EVERY=${BENCH_TOKEN_EVERY:-10}
RATE=${BENCH_RATE:-100}
PORT=${BENCH_PORT:-18743}
METRICS_PORT=$((PORT + 1))
WORK=$(realpath -m "${BENCH_DIR:-target/bench-tenants}")
PASSWORD=bench-password-0001

cargo build --release --bin scimd --example bench-tenants
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
BIN=$TARGET/release/scimd
# BENCH_REUSE=1 keeps the tenants of an earlier run with the same BENCH_TENANTS (the set-up is
# most of a run at 10,000).
if [ -n "${BENCH_REUSE:-}" ] && [ -f "$WORK/tokens.txt" ] && [ "$(ls "$WORK/data/tenants" | wc -l)" = "$N" ]; then
    REUSED=1
else
    REUSED=0
    rm -rf "$WORK"
fi
mkdir -p "$WORK"
export SCIMD_DATA_DIR=$WORK/data SCIMD_KDF_ITERATIONS=1000 SCIMD_METRICS_LISTEN=127.0.0.1:$METRICS_PORT
unset SCIMD_CONFIG

started=$(date +%s)
if [ $REUSED = 0 ]; then
    seq 0 $((N - 1)) | xargs -P 2 -I{} sh -c '
        t=$(printf "t%05d" {})
        "$0" tenant create "$t" >/dev/null
        printf "%s\n" "$1" | "$0" admin add --tenant "$t" --username scim-admin --password-stdin >/dev/null
' "$BIN" "$PASSWORD"
    : > "$WORK/tokens.txt"
    for i in $(seq 0 "$TOKEN_EVERY" $((N - 1))); do
        t=$(printf "t%05d" "$i")
        "$BIN" token keygen --tenant "$t" >/dev/null
        echo "$t $("$BIN" token issue --tenant "$t" --username scim-admin | sed -n 's/^token (shown once): //p')" >> "$WORK/tokens.txt"
    done
fi
setup=$(( $(date +%s) - started ))
rm -rf "$WORK/certs"
"$BIN" cert self-signed --host localhost --out "$WORK/certs" >/dev/null

prlimit --nofile=1024:"$(ulimit -Hn)" "$BIN" serve --listen 127.0.0.1:$PORT \
    --cert "$WORK/certs/server.pem" --key "$WORK/certs/server.key" 2> "$WORK/serve.log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf --cacert "$WORK/certs/ca.pem" "https://localhost:$PORT/healthz" >/dev/null && break
    sleep 0.1
done

RESULTS=$WORK/tenants.jsonl
echo "{\"phase\":\"setup\",\"tenants\":$N,\"tokens\":$(wc -l < "$WORK/tokens.txt"),\"seconds\":$setup,\"reused\":$REUSED}" | tee "$RESULTS"
# First paced (BENCH_RATE steps a second, each a cold and a warm request, cold timed from
# when it was due), then as fast as 16 connections are answered (saturation: latency there
# is the queue, not the work).
for rate in "$RATE" 0; do
    "$TARGET/release/examples/bench-tenants" --addr localhost:$PORT --ca "$WORK/certs/ca.pem" --tenants "$N" \
        --password "$PASSWORD" --tokens "$WORK/tokens.txt" --seconds "$RUN_SECONDS" --pid $PID --rate "$rate" | tee -a "$RESULTS"
done

# What watching every tenant costs once all of them have been touched: mean of 20 calls.
cost() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s%N)
    for _ in $(seq 20); do "$@" >/dev/null; done
    t1=$(date +%s%N)
    echo "{\"phase\":\"$name\",\"tenants\":$N,\"mean_ms\":$(( (t1 - t0) / 20000000 ))}" | tee -a "$RESULTS"
}
cost healthz curl -sf --cacert "$WORK/certs/ca.pem" "https://localhost:$PORT/healthz"
cost metrics curl -sf "http://127.0.0.1:$METRICS_PORT/metrics"
cost tenant_list "$BIN" tenant list
echo "{\"phase\":\"metrics_lines\",\"tenant_gauges\":$(curl -sf http://127.0.0.1:$METRICS_PORT/metrics | grep -c '^scimd_tenant_users{')}" | tee -a "$RESULTS"
