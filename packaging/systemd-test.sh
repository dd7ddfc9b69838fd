#!/usr/bin/env bash
# The systemd path end to end, with systemd as PID 1 in a privileged podman container booted
# from a bookworm root made with mmdebstrap (tests/it/packaging.rs runs it; so can an operator):
#
#     packaging/systemd-test.sh [BINARY]        # default: target/release/scimd
#
# The install steps of packaging/README.md run inside as written (sudo dropped: root already;
# `sudo -u scimd` is runuser), then: the unit starts and reaches READY (active, no restart),
# logs its open-file limit, answers `scimd healthcheck`, `systemctl reload` reloads (SIGHUP,
# the server says so), `systemctl stop` ends it with status 0 and Result=success. Then port
# 443 (README, "Automatic certificates"): refused to the shipped unit, which has no
# capabilities; bound with the README's drop-in.
# Needs podman, runc (or a working crun), mmdebstrap (only while the base image is missing).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
binary=$(realpath "${1:-$repo/target/release/scimd}")
# shellcheck source=packaging/podman-env.sh
. "$repo/packaging/podman-env.sh"
box=scimd-systemd-$$
image=localhost/scimd-systemd-base:bookworm
started=$SECONDS
[ -x "$binary" ] || fail "no binary at $binary (cargo build --release)"
trap 'podman rm -f -t 0 "$box" >/dev/null 2>&1 || true' EXIT

# procps: the unit's ExecReload is /bin/kill, which every Debian system has but minbase.
debian_base "$image" systemd,systemd-sysv,procps
# Ports below 1024 privileged as on a host (podman lets containers bind them by default).
podman run -d --name "$box" --privileged --sysctl net.ipv4.ip_unprivileged_port_start=1024 --systemd=always "$image" /sbin/init 2> >(quiet) >/dev/null
deadline=$(( SECONDS + 60 ))
until state=$(podman exec "$box" systemctl is-system-running 2>/dev/null); [ "$state" = running ] || [ "$state" = degraded ]; do
    [ $SECONDS -lt $deadline ] || fail "systemd did not finish booting within 60 s ($state)"
    sleep 0.2
done
say "systemd is PID 1 in $box after $(( SECONDS - started )) s"

# The checkout the README's commands run in: the binary as cargo build --release leaves it.
podman exec "$box" mkdir -p /src/target/release /src/packaging
podman cp "$binary" "$box:/src/target/release/scimd"
podman cp "$repo/packaging/scimd.service" "$box:/src/packaging/scimd.service"
podman cp "$repo/packaging/scimd.toml" "$box:/src/packaging/scimd.toml"
run() { podman exec -w /src "$box" sh -euc "$1"; }
run '
install -m 0755 target/release/scimd /usr/local/bin/scimd
useradd --system --home-dir /var/lib/scimd --shell /usr/sbin/nologin scimd
install -d -m 0750 -o root -g scimd /etc/scimd /etc/scimd/tls
install -m 0640 -g scimd packaging/scimd.toml /etc/scimd/scimd.toml
install -m 0644 packaging/scimd.service /etc/systemd/system/scimd.service
scimd man --out /usr/local/share/man/man1 >/dev/null
scimd cert self-signed --host localhost --host 127.0.0.1 --out /etc/scimd/tls >/dev/null
sed -i "s|^cert = .*|cert = \"/etc/scimd/tls/server.pem\"|; s|^key = .*|key = \"/etc/scimd/tls/server.key\"|" /etc/scimd/scimd.toml
chgrp scimd /etc/scimd/tls/server.key && chmod 0640 /etc/scimd/tls/server.key
systemctl daemon-reload && systemctl enable --now scimd 2>/dev/null
'
[ "$(run 'systemctl is-active scimd')" = active ] || fail "scimd is not active: $(run 'journalctl -u scimd --no-pager' 2>&1)"
[ "$(run 'systemctl show -p NRestarts --value scimd')" = 0 ] || fail "scimd restarted"
say "started and READY after $(( SECONDS - started )) s"
run 'runuser -u scimd -- scimd healthcheck --config /etc/scimd/scimd.toml' >/dev/null || fail "healthcheck failed"
run 'runuser -u scimd -- scimd tenant create acme --data-dir /var/lib/scimd' >/dev/null
run 'runuser -u scimd -- scimd admin add --tenant acme --username okta-scim --data-dir /var/lib/scimd' | grep -q '^password (shown once): ' || fail "admin add"
run 'systemctl reload scimd' || fail "systemctl reload failed: $(run 'journalctl -u scimd --no-pager | tail -5' 2>&1)"
deadline=$(( SECONDS + 20 ))
until run 'journalctl -u scimd --no-pager' | grep -q 'SIGHUP: reloading'; do
    [ $SECONDS -lt $deadline ] || fail "no reload in the journal after systemctl reload"
    sleep 0.2
done
run 'systemctl stop scimd'
result=$(run 'systemctl show -p Result -p ExecMainCode -p ExecMainStatus scimd' | sort | tr '\n' ' ')
[ "$result" = "ExecMainCode=1 ExecMainStatus=0 Result=success " ] || fail "after systemctl stop: $result"
journal=$(run 'journalctl -u scimd --no-pager')
grep -q 'open files: soft limit' <<<"$journal" || fail "the open-file limit is not logged"
! grep -q 'mode is different' <<<"$journal" || fail "the unit and the README disagree on a directory's mode: $journal"
say "reloaded, stopped with status 0; passed in $(( SECONDS - started )) s"

# Port 443 for ACME's TLS-ALPN-01: the shipped unit may not bind it; the README's drop-in may.
grep -q 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' "$repo/README.md" && grep -q 'AmbientCapabilities=CAP_NET_BIND_SERVICE' "$repo/README.md" \
    || fail "the README no longer gives the port-443 drop-in this test follows"
run 'sed -i "s|^listen = .*|listen = \"0.0.0.0:443\"|" /etc/scimd/scimd.toml; systemctl start scimd 2>/dev/null || true'
deadline=$(( SECONDS + 20 ))
until run 'journalctl -u scimd --no-pager' | grep -q 'cannot listen on 0.0.0.0:443'; do
    [ $SECONDS -lt $deadline ] || fail "the shipped unit bound port 443: $(run 'journalctl -u scimd --no-pager | tail -5' 2>&1)"
    sleep 0.2
done
run 'systemctl stop scimd; systemctl reset-failed scimd 2>/dev/null || true
mkdir -p /etc/systemd/system/scimd.service.d
printf "[Service]\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n" > /etc/systemd/system/scimd.service.d/port-443.conf
systemctl daemon-reload && systemctl start scimd'
[ "$(run 'systemctl is-active scimd')" = active ] || fail "with the drop-in scimd is not active: $(run 'journalctl -u scimd --no-pager | tail -5' 2>&1)"
run 'journalctl -u scimd --no-pager' | grep -q 'serving on https://0.0.0.0:443' || fail "not serving on 443"
run 'systemctl stop scimd'
say "port 443: refused without the drop-in, served with it; passed in $(( SECONDS - started )) s"
