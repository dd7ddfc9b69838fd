#!/usr/bin/env bash
# The many-tenants benchmark (issue 16). BENCH_TENANTS (default 10,000) tenants are created
# through the CLI, each with a SCIM admin (HTTP Basic); one in BENCH_TOKEN_EVERY (default 10)
# also gets a bearer token. `scimd serve` (release, default settings: max_open_tenants 256)
# starts with a soft open-file limit of 1,024, and bench-tenants touches random tenants for
# BENCH_SECONDS (default 180) over 16 connections, sampling RSS, threads and open files. Then
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
PORT=${BENCH_PORT:-18743}
METRICS_PORT=$((PORT + 1))
WORK=$(realpath -m "${BENCH_DIR:-target/bench-tenants}")
PASSWORD=bench-password-0001

cargo build --release --bin scimd --example bench-tenants
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
BIN=$TARGET/release/scimd
rm -rf "$WORK"
mkdir -p "$WORK"
export SCIMD_DATA_DIR=$WORK/data SCIMD_KDF_ITERATIONS=1000 SCIMD_METRICS_LISTEN=127.0.0.1:$METRICS_PORT
unset SCIMD_CONFIG

started=$(date +%s)
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
setup=$(( $(date +%s) - started ))
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
echo "{\"phase\":\"setup\",\"tenants\":$N,\"tokens\":$(wc -l < "$WORK/tokens.txt"),\"seconds\":$setup}" | tee "$RESULTS"
"$TARGET/release/examples/bench-tenants" --addr localhost:$PORT --ca "$WORK/certs/ca.pem" --tenants "$N" \
    --password "$PASSWORD" --tokens "$WORK/tokens.txt" --seconds "$RUN_SECONDS" --pid $PID | tee -a "$RESULTS"

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
