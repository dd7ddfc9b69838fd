#!/usr/bin/env bash
# The container path end to end, with podman on a Debian bookworm host that reaches no
# container registry (tests/it/container.rs runs it; an operator can too):
#
#     packaging/container-test.sh [BINARY]        # default: target/release/scimd
#
# 1. The base image the runtime stage starts FROM, made from the Debian mirror apt uses
#    (mmdebstrap) and imported under that name; kept, so the next run skips this.
# 2. The image: `--target prebuilt`, the runtime stage around BINARY (built on this host,
#    bookworm's glibc), with --format docker so the HEALTHCHECK is kept. With
#    SCIMD_CONTAINER_FULL=1, the full two-stage build from the repository instead (minutes).
# 3. A key uid 10001 cannot read: the container exits 1 and says so in one JSON line.
# 4. The key given to uid 10001 (chown as root, `podman unshare chown` rootless), the
#    container run with a volume and the TLS mount; `podman healthcheck run` polled until
#    it passes; uid/gid 10001; tenant create + admin add through podman exec; a SCIM POST
#    over TLS from the host with those credentials; /metrics published from the host;
#    `podman stop` exits 0 within the stop timeout; every log line JSON, no /healthz line.
# 5. `podman rm`, a new `podman run` on the same volume: the tenant and the user are there.
#
# Exit 0 when every check passed. Logs and outputs are left in $SCIMD_CONTAINER_OUT (a new
# temporary directory if unset) for the caller to inspect further. Needs podman, runc (or a
# working crun), mmdebstrap (only while the base image is missing), curl.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
binary=$(realpath "${1:-$repo/target/release/scimd}")
containerfile=$repo/packaging/Containerfile
out=${SCIMD_CONTAINER_OUT:-$(mktemp -d -t scimd-container.XXXXXX)}
run_id=scimd-test-$$
image=localhost/scimd:$run_id
volume=$run_id-data
# shellcheck source=packaging/podman-env.sh
. "$repo/packaging/podman-env.sh"
mkdir -p "$out"
started=$SECONDS

[ -x "$binary" ] || fail "no binary at $binary (cargo build --release)"

containers=()
cleanup() {
    for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
    podman volume rm -f "$volume" >/dev/null 2>&1 || true
    podman rmi -f "$image" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# 1. The base image.
base=$(awk '/^FROM / && / AS runtime-base/ {print $2}' "$containerfile")
[ -n "$base" ] || fail "no 'FROM … AS runtime-base' in $containerfile"
debian_base "$base"

# 2. The image, and the build context .containerignore leaves of the repository.
if [ "${SCIMD_CONTAINER_FULL:-}" = 1 ]; then
    # The two-stage build from the repository, as the README gives it. Its build stage's
    # base stands in for the Docker Hub image: bookworm-security's rustc-web and cargo-web.
    # It fetches crates: the host's CA bundle goes in, for networks that intercept HTTPS.
    builder=$(awk '/^FROM / && / AS build$/ {print $2}' "$containerfile")
    debian_base "$builder" rustc-web,cargo-web,ca-certificates,gcc,libc6-dev
    say "the two-stage build (minutes: every crate in release mode)"
    ca=/etc/ssl/certs/ca-certificates.crt
    podman build --quiet --format docker "${ulimits[@]}" -v "$ca:$ca:ro" -f "$containerfile" -t "$image" "$repo" >/dev/null
else
    context=$(mktemp -d -p "$out" context.XXXXXX)
    cp "$binary" "$context/scimd"
    podman build --quiet --format docker --target prebuilt "${ulimits[@]}" -f "$containerfile" -t "$image" "$context" >/dev/null
fi
podman image inspect --format '{{json .HealthCheck}}' "$image" >"$out/healthcheck.json"
grep -q 'scimd","healthcheck"' "$out/healthcheck.json" || fail "the image has no HEALTHCHECK (built without --format docker?)"
printf 'FROM %s\nCOPY . /context\n' "$base" >"$out/Context.containerfile"
podman build --quiet "${ulimits[@]}" -f "$out/Context.containerfile" -t "$image-context" "$repo" >/dev/null
podman run --rm --entrypoint /bin/sh "$image-context" -c 'cd /context && du -sk . && ls -A' >"$out/context.txt" 2>/dev/null
podman rmi -f "$image-context" >/dev/null
for unwanted in target demo-data .git fuzz; do
    ! grep -qx "$unwanted" "$out/context.txt" || fail "the build context holds $unwanted/ (.containerignore)"
done
say "image built ($(( SECONDS - started )) s so far); build context: $(head -1 "$out/context.txt" | cut -f1) KiB"

# 3. The certificate, as `scimd cert self-signed` writes it: the key is 0600 and ours.
tls=$out/tls
"$binary" cert self-signed --host localhost --host 127.0.0.1 --out "$tls" >"$out/cert.txt"
run_args=(--stop-timeout 30 -v "$volume:/var/lib/scimd" -v "$tls:/tls:ro"
    -e SCIMD_CERT=/tls/server.pem -e SCIMD_KEY=/tls/server.key)
podman volume create "$volume" >/dev/null
if [ "$(id -u)" = 0 ]; then
    containers+=("$run_id-nokey")
    podman run -d --name "$run_id-nokey" "${run_args[@]}" "$image" 2> >(quiet) >/dev/null
    code=$(podman wait "$run_id-nokey")
    podman logs "$run_id-nokey" >"$out/nokey.log" 2>&1
    [ "$code" = 1 ] || fail "with a key uid 10001 cannot read the container exited $code, not 1"
    grep -q '^{.*"level":"ERROR".*cannot read private key.*Permission denied' "$out/nokey.log" || fail "no JSON line about the key: $(cat "$out/nokey.log")"
    chown 10001:10001 "$tls/server.key"
else
    # Rootless: uid 10001 in the container is a subordinate uid outside it.
    podman unshare chown 10001:10001 "$tls/server.key"
fi

# 4. Run, wait for health, provision, call, stop.
start() { # name: runs the image detached, publishes both listeners on the host's loopback
    containers+=("$1")
    podman run -d --name "$1" "${run_args[@]}" -e SCIMD_METRICS_LISTEN=0.0.0.0:9464 \
        -p 127.0.0.1::8443 -p 127.0.0.1::9464 "$image" 2> >(quiet) >/dev/null
    local deadline=$(( SECONDS + 60 ))
    until podman healthcheck run "$1" >/dev/null 2>&1; do
        [ "$(podman inspect --format '{{.State.Running}}' "$1")" = true ] || fail "$1 exited: $(podman logs "$1" 2>&1)"
        [ $SECONDS -lt $deadline ] || fail "$1 not healthy within 60 s: $(podman logs "$1" 2>&1)"
        sleep 0.2
    done
    port=$(podman port "$1" 8443/tcp | head -1)
    metrics=$(podman port "$1" 9464/tcp | head -1)
}
start "$run_id"
say "healthy after $(( SECONDS - started )) s: https://$port, metrics http://$metrics"
podman exec "$run_id" id >"$out/id.txt"
grep -q '^uid=10001(scimd) gid=10001(scimd) groups=10001(scimd)$' "$out/id.txt" || fail "runs as $(cat "$out/id.txt")"
grep -qE '^Uid:\s+10001\s+10001\s+10001\s+10001$' <(podman exec "$run_id" cat /proc/1/status) || fail "PID 1 is not uid 10001"
[ "$(podman exec "$run_id" stat -c %u:%g:%a /var/lib/scimd)" = 10001:10001:700 ] || fail "/var/lib/scimd is not 10001:10001 0700"
# The commands log (JSON, as configured) on stderr and answer on stdout.
podman exec "$run_id" scimd tenant create acme >"$out/tenant-create.txt" 2>>"$out/exec.log"
podman exec "$run_id" scimd admin add --tenant acme --username okta-scim >"$out/admin-add.txt" 2>>"$out/exec.log"
password=$(sed -n 's/^password (shown once): //p' "$out/admin-add.txt")
[ -n "$password" ] || fail "admin add printed no password: $(cat "$out/admin-add.txt")"
status=$(curl -sS --cacert "$tls/ca.pem" -u "okta-scim:$password" -o "$out/post.json" -w '%{http_code}' \
    -H 'content-type: application/scim+json' \
    -d '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice@example.com","emails":[{"value":"alice@example.com","primary":true}]}' \
    "https://$port/t/acme/scim/v2/Users")
[ "$status" = 201 ] || fail "POST /Users answered $status: $(cat "$out/post.json")"
curl -sS "http://$metrics/metrics" >"$out/metrics.txt"
grep -q '^scimd_http_requests_total' "$out/metrics.txt" || fail "no request counter on the published metrics listener"
for _ in 1 2 3; do podman healthcheck run "$run_id" >/dev/null; done
stop_started=$SECONDS
podman stop "$run_id" 2> >(quiet) >/dev/null
stopped_in=$(( SECONDS - stop_started ))
code=$(podman inspect --format '{{.State.ExitCode}}' "$run_id")
[ "$code" = 0 ] || fail "exit code $code after podman stop (137: killed at the stop timeout)"
[ "$stopped_in" -lt 30 ] || fail "podman stop took $stopped_in s"
podman logs "$run_id" >"$out/first.log" 2>&1
grep -v '^{".*}$' "$out/first.log" && fail "log lines above are not JSON objects"
! grep -q '/healthz' "$out/first.log" || fail "a passing healthcheck wrote an access-log line"
grep -q 'POST /t/acme/scim/v2/Users 201' "$out/first.log" || fail "no access-log line for the POST"
say "stopped in $stopped_in s, exit 0; $(wc -l <"$out/first.log") log lines, all JSON"

# 5. The data outlives the container.
podman rm "$run_id" 2> >(quiet) >/dev/null
start "$run_id-again"
podman exec "$run_id-again" scimd tenant list >"$out/tenant-list.txt" 2>>"$out/exec.log"
grep -qx acme "$out/tenant-list.txt" || fail "tenant acme is gone after podman rm"
status=$(curl -sS --cacert "$tls/ca.pem" -u "okta-scim:$password" -o "$out/get.json" -w '%{http_code}' -G \
    --data-urlencode 'filter=userName eq "alice@example.com"' "https://$port/t/acme/scim/v2/Users")
[ "$status" = 200 ] && grep -q '"totalResults":1' "$out/get.json" || fail "alice is gone after podman rm: $status $(cat "$out/get.json")"
podman stop "$run_id-again" 2> >(quiet) >/dev/null
podman logs "$run_id-again" >"$out/second.log" 2>&1
say "passed in $(( SECONDS - started )) s (outputs in $out)"
