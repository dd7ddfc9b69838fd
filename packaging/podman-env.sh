# Sourced by packaging/container-test.sh and packaging/systemd-test.sh: podman as it can run
# on a Debian host that reaches no registry. Sets cache, CONTAINERS_CONF, ulimits (for
# podman build), say, fail, quiet and debian_base.

cache=${SCIMD_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scimd-container}
mkdir -p "$cache"

say() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# podman's default ulimits (nofile and nproc at 1048576 and more) exceed the hard limits of
# some hosts, and runc then cannot start anything; its default runtime, crun 1.8, refuses
# hybrid cgroup hierarchies. Unless the caller brings a CONTAINERS_CONF, use one that sets
# the limits this host allows (nproc also at most pid_max: runc was refused above it here)
# and runc when it is installed.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
if [ -z "${CONTAINERS_CONF:-}" ]; then
    # Written aside and renamed: both scripts may run at once (cargo test runs them in
    # parallel), and a podman reading a half-written file would fall back to its defaults.
    conf=$(mktemp -p "$cache" containers.conf.XXXXXX)
    {
        echo '[containers]'
        echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
        if command -v runc >/dev/null; then printf '[engine]\nruntime = "runc"\n'; fi
    } >"$conf"
    chmod 0644 "$conf"
    mv "$conf" "$cache/containers.conf"
    export CONTAINERS_CONF=$cache/containers.conf
fi
ulimits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

# Without systemd as PID 1 podman cannot install a healthcheck's timer and says so on every
# run, stop and rm; `podman healthcheck run` runs the check itself.
quiet() { grep -v -e 'unable to get systemd connection' -e 'Removing timer for container' >&2 || true; }

# debian_base IMAGE [PACKAGES]: IMAGE made from bookworm minbase (plus passwd, which
# debian:bookworm-slim has and minbase has not, and PACKAGES) with mmdebstrap from the
# Debian mirror, security updates included (rustc-web 1.96 for the build stage is there),
# unless it exists; the tarball is kept in the cache too.
debian_base() {
    local image=$1 include=passwd${2:+,$2}
    if podman image exists "$image"; then
        say "base image $image present"
        return
    fi
    local rootfs=$cache/bookworm-minbase-${include//,/-}.tar
    if [ ! -s "$rootfs" ]; then
        say "making $image from the Debian mirror (mmdebstrap, about a minute)"
        mmdebstrap --quiet --format=tar --variant=minbase --include="$include" bookworm "$rootfs.$$.part" \
            "deb http://deb.debian.org/debian bookworm main" "deb http://deb.debian.org/debian-security bookworm-security main" >&2
        mv "$rootfs.$$.part" "$rootfs"
    fi
    podman import --quiet "$rootfs" "$image" >/dev/null
}
