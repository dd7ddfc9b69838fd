#!/usr/bin/env bash
# The scimd benchmark (issue 9). For each size N (BENCH_SIZES, default "100000 1000000"):
#   1. a fresh data directory set up by `scimd demo` (tenant, admin, token, certificate);
#   2. `scimd serve` (release build, default logging) seeded through the SCIM API by
#      bench-seed: N users + BENCH_SPARE (100,000) spare users, and a group of 100,000
#      members;
#   3. a restart, timing start-up (READY=1 and first /healthz) and reading RSS;
#   4. fixed-duration wrk phases over 16 keep-alive TLS connections: get by id, filter
#      userName eq, list a page of 100, PATCH active, add one member to the big group,
#      remove one, create; Okta's import walk (bench-import); then RSS again; a page of
#      groups without members, the big group read whole by one client, and RSS again;
# and once per run the ceiling (bench-ceiling: hyper + tokio-rustls, fixed 300-byte JSON)
# and the durable-insert baseline (bench-insert-loop). Every result is a JSON line in
# $BENCH_DIR/results.jsonl; benches/report.py turns them into BENCHMARKS.md's entry.
#
#   benches/run.sh                       # both sizes, 10 s phases, appends to BENCHMARKS.md
#   BENCH_SIZES=100000 BENCH_SECONDS=5 BENCH_APPEND=0 benches/run.sh
#   BENCH_PROFILE=create benches/run.sh  # also `perf record` the server during one phase
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${BENCH_SIZES:-"100000 1000000"}
PHASE_SECONDS=${BENCH_SECONDS:-10}
# Each member phase changes a different member per request: 100,000 of them last ~4 s at
# ~25,000 changes/s, so these phases are shorter (a phase that runs out says "reused").
MEMBER_SECONDS=${BENCH_MEMBER_SECONDS:-3}
SPARE=${BENCH_SPARE:-100000}
MEMBERS=${BENCH_MEMBERS:-100000}
PORT=${BENCH_PORT:-18643}
WORK=$(realpath -m "${BENCH_DIR:-target/bench}")
PROFILE=${BENCH_PROFILE:-}
CONNECTIONS=16
THREADS=2

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
if [ -n "$PROFILE" ] && ! command -v perf >/dev/null; then
    echo "BENCH_PROFILE needs perf (apt-get install linux-perf)" >&2
    exit 1
fi

cargo build --release --bin scimd --example bench-ceiling --example bench-seed --example bench-insert-loop --example bench-import
BIN=target/release
rm -rf "$WORK"
mkdir -p "$WORK"
RESULTS=$WORK/results.jsonl
export BENCH_LUA_DIR=$PWD/benches/wrk

SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        while kill -0 "$SERVER_PID" 2>/dev/null; do sleep 0.05; done
        SERVER_PID=
    fi
}
trap stop_server EXIT

record() { # size json → results.jsonl, tagged with the size
    python3 -c 'import json,sys; d=json.loads(sys.argv[2]); d["users"]=int(sys.argv[1]); print(json.dumps(d))' "$1" "$2" >>"$RESULTS"
    echo "$2"
}

memory() { # size label pid
    record "$1" "$(awk -v label="$2" '/^VmRSS|^VmHWM/ {v[$1]=$2} END {printf "{\"phase\":\"memory_%s\",\"rss_mib\":%.1f,\"hwm_mib\":%.1f}", label, v["VmRSS:"]/1024, v["VmHWM:"]/1024}' "/proc/$3/status")"
}

start_server() { # data-dir log → $SERVER_PID, and the start-up timings in $WORK/startup.json
    python3 benches/start.py "$2" -- "$BIN/scimd" serve --data-dir "$1" --listen "127.0.0.1:$PORT" \
        --cert "$1/certs/server.pem" --key "$1/certs/server.key" --metrics-listen off >"$WORK/startup.json"
    SERVER_PID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$WORK/startup.json")
}

phase() { # size seconds script url extra-wrk-args...
    local size=$1 seconds=$2 script=$3 url=$4
    shift 4
    local perf_pid=
    if [ -n "$PROFILE" ] && [ "$PROFILE.lua" = "$script" ]; then
        perf record -F 999 -g -p "$SERVER_PID" -o "$WORK/perf-$PROFILE-$size.data" 2>/dev/null &
        perf_pid=$!
    fi
    wrk -t$THREADS -c$CONNECTIONS -d"${seconds}s" --latency -s "benches/wrk/$script" "$@" "$url" >"$WORK/wrk.out" 2>"$WORK/wrk.err"
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        perf report -i "$WORK/perf-$PROFILE-$size.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -40 >"$WORK/perf-$PROFILE-$size.txt" || true # head closes the pipe: SIGPIPE
    fi
    if [ -s "$WORK/wrk.err" ]; then
        sed 's/^/wrk: /' "$WORK/wrk.err" | sort | uniq -c | head -5 >&2
    fi
    record "$size" "$(grep '^{"phase"' "$WORK/wrk.out" | tail -1)"
}

for N in $SIZES; do
    DIR=$WORK/n$N
    DATA=$DIR/data
    mkdir -p "$DIR"
    # scimd demo makes the tenant, admin, token and certificate; then it is stopped.
    "$BIN/scimd" demo --data-dir "$DATA" --listen 127.0.0.1:0 >"$DIR/demo.log" 2>&1 &
    DEMO_PID=$!
    for _ in $(seq 300); do [ -s "$DATA/demo.json" ] && break; sleep 0.1; done
    kill -TERM $DEMO_PID
    wait $DEMO_PID || true
    BASE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$DATA/demo.json" | sed -E "s#//127.0.0.1:[0-9]+/#//127.0.0.1:$PORT/#")
    TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$DATA/demo.json")
    AUTH="Authorization: Bearer $TOKEN"

    start_server "$DATA" "$DIR/server.log"
    echo "seeding $N users + $SPARE spare and a group of $MEMBERS members" >&2
    record "$N" "$(sed 's/^{/{"phase":"seed",/' <<<"$("$BIN/examples/bench-seed" --base "$BASE" --ca "$DATA/certs/ca.pem" \
        --token "$TOKEN" --users "$N" --spare "$SPARE" --members "$MEMBERS" --out "$DIR/seed")")"
    stop_server
    start_server "$DATA" "$DIR/server.log"
    record "$N" "$(sed 's/^{"pid": [0-9]*, /{"phase":"startup",/' "$WORK/startup.json")"
    memory "$N" start "$SERVER_PID"

    export BENCH_SEED_DIR=$DIR/seed BENCH_USERS=$N BENCH_RUN=$N
    phase "$N" "$PHASE_SECONDS" get.lua "$BASE" -H "$AUTH"
    phase "$N" "$PHASE_SECONDS" filter.lua "$BASE" -H "$AUTH"
    phase "$N" "$PHASE_SECONDS" list.lua "$BASE" -H "$AUTH"
    phase "$N" "$PHASE_SECONDS" patch_active.lua "$BASE" -H "$AUTH" -H "Content-Type: application/scim+json"
    phase "$N" "$MEMBER_SECONDS" member_add.lua "$BASE" -H "$AUTH" -H "Content-Type: application/scim+json"
    phase "$N" "$MEMBER_SECONDS" member_remove.lua "$BASE" -H "$AUTH" -H "Content-Type: application/scim+json"
    phase "$N" "$PHASE_SECONDS" create.lua "$BASE" -H "$AUTH" -H "Content-Type: application/scim+json"
    # Okta's import: every user, page by page (startIndex 1, 101, …), on one connection.
    echo "reading all users by index paging" >&2
    record "$N" "$(sed 's/^{/{"phase":"import",/' <<<"$("$BIN/examples/bench-import" --base "$BASE" --ca "$DATA/certs/ca.pem" --token "$TOKEN")")"
    memory "$N" after_phases "$SERVER_PID"
    # Groups (issue 19), after the RSS reading: a page of groups without their members, and
    # the 100,000-member group read whole (a 16 MB answer) by one client, then RSS again.
    phase "$N" "$MEMBER_SECONDS" list_groups.lua "$BASE" -H "$AUTH"
    SAVED_THREADS=$THREADS SAVED_CONNECTIONS=$CONNECTIONS
    THREADS=1 CONNECTIONS=1
    phase "$N" "$MEMBER_SECONDS" get_group.lua "$BASE" -H "$AUTH"
    THREADS=$SAVED_THREADS CONNECTIONS=$SAVED_CONNECTIONS
    memory "$N" after_group "$SERVER_PID"
    stop_server
    record "$N" "{\"phase\":\"disk\",\"database_mib\":$(du -sm "$DATA/tenants/demo" | cut -f1)}"
    CERTS=$DATA/certs
done

# The ceiling and the insert baseline, on the same box and disk.
"$BIN/examples/bench-ceiling" "$CERTS/server.pem" "$CERTS/server.key" "127.0.0.1:$PORT" >"$WORK/ceiling.addr" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$WORK/ceiling.addr" ] && break; sleep 0.05; done
phase 0 "$PHASE_SECONDS" ceiling.lua "https://127.0.0.1:$PORT/t/demo/scim/v2/Users/x"
stop_server
record 0 "$("$BIN/examples/bench-insert-loop" "$WORK" "$PHASE_SECONDS")"

python3 benches/report.py "$RESULTS" "$PHASE_SECONDS" ${BENCH_APPEND:+--append=$BENCH_APPEND}
