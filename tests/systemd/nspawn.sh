#!/usr/bin/env bash
# Boots a throwaway systemd (systemd-nspawn --boot, private network: only loopback) on a cached
# minimal Debian rootfs, for tests/systemd.rs. Derived from the tested recipe
# ../shared/recipes/systemd-unit-in-nspawn.sh; works on hosts whose PID 1 is not systemd.
#
#   tests/systemd/nspawn.sh REPO BINARY
#
# REPO is bind-mounted read-only at /src and BINARY at /opt/failoverd, so the test installs with
# /src/scripts/install.sh as an operator would. Once the container's systemd is up, prints
# `READY <host pid of the container's PID 1>` on stdout (run commands inside with
# `nsenter -t PID -a`), then waits until its stdin is closed, powers the container off and removes
# everything it made. Progress and errors go to stderr. Exit status: 0 after a clean run, 2 when
# the rootfs cannot be built or systemd cannot be booted.
#
# Environment: SUITE (default: this host's Debian codename, so the test binary's glibc matches),
# CACHE (default /var/cache/systemd-recipe, shared with the recipe; rootfs built once per package
# list), KEEP_RUNDIR=1 to keep the overlay and the console log.
set -u -o pipefail

# ------------------------------------------------------------------ inner (private mount ns)
if [ "${1:-}" = "__inner" ]; then
    set -e
    RUN=$2 ROOTFS=$3 MACHINE=$4 REPO=$5 BIN=$6
    # In a private mount namespace (unshare below): it all vanishes with it. nspawn wants a tmpfs
    # at /run for its lock and propagation directories.
    mount -t tmpfs -o mode=0755 tmpfs /run
    mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$RUN/upper,workdir=$RUN/work" "$RUN/root"
    exec systemd-nspawn --quiet -D "$RUN/root" -M "$MACHINE" --boot \
        --register=no --keep-unit --private-network \
        --bind-ro="$REPO:/src" --bind-ro="$BIN:/opt/failoverd" \
        --settings=no --link-journal=no --resolv-conf=off --timezone=off \
        --console=read-only </dev/null
fi

# ------------------------------------------------------------------ outer
say() { echo "nspawn.sh: $*" >&2; }
die() { say "$*"; exit 2; }
[ $# -eq 2 ] || die "usage: $0 REPO BINARY"
[ "$(id -u)" = 0 ] || die "must run as root (it boots a container)"
REPO=$(readlink -f "$1") BIN=$(readlink -f "$2")
[ -f "$REPO/scripts/install.sh" ] || die "$REPO is not the failoverd repository"
[ -x "$BIN" ] || die "no executable $BIN"
for t in systemd-nspawn nsenter unshare setpriv mmdebstrap flock timeout; do
    command -v $t >/dev/null || die "missing $t (apt-get install systemd-container mmdebstrap util-linux)"
done
# shellcheck disable=SC1091
SUITE=${SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
CACHE=${CACHE:-/var/cache/systemd-recipe}
SELF=$(readlink -f "$0")

# ---- 1. the rootfs: built once, then the read-only lower layer of an overlay.
# No ca-certificates on purpose: the agent must run without system roots when no check needs them.
# dig (bind9-dnsutils) is the DNS client; busybox httpd is the application the checks probe.
PKGS="systemd,systemd-sysv,dbus,bind9-dnsutils,busybox"
KEY=$(printf '%s %s' "$SUITE" "$PKGS" | sha256sum | cut -c1-10)
ROOTFS=$CACHE/rootfs-$SUITE-$KEY
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ ! -x "$ROOTFS/lib/systemd/systemd" ]; then
    # The host's configured Debian mirror: mmdebstrap accepts a sources file as MIRROR.
    SRC=/etc/apt/sources.list.d/debian.sources
    [ -f "$SRC" ] || SRC=/etc/apt/sources.list
    say "building $ROOTFS ($SUITE: $PKGS) from $SRC, about 35 s ..."
    t0=$(date +%s)
    rm -rf "$ROOTFS.tmp"
    mmdebstrap --quiet --variant=minbase --include="$PKGS" --format=directory \
        "$SUITE" "$ROOTFS.tmp" "$SRC" > "$CACHE/build-$KEY.log" 2>&1 \
        || { tail -20 "$CACHE/build-$KEY.log" >&2; rm -rf "$ROOTFS.tmp"; die "mmdebstrap failed"; }
    # An empty machine-id: systemd initialises it from the container UUID at every boot.
    : > "$ROOTFS.tmp/etc/machine-id"
    mv "$ROOTFS.tmp" "$ROOTFS"
    say "rootfs built in $(( $(date +%s) - t0 )) s"
fi
flock -u 9; exec 9>&-

# ---- 2. per-run state: an overlay upper dir and private cgroups for nspawn (it would otherwise
# create /payload and /supervisor at the root of the host's hierarchies).
ID=$$-$(date +%s%N | tail -c 7)
MACHINE=failoverd-test-$ID
RUN=$(mktemp -d /tmp/failoverd-nspawn.XXXXXX)
mkdir -p "$RUN/upper" "$RUN/work" "$RUN/root"
CGS=()
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    CGS=("/sys/fs/cgroup/failoverd-test-$ID")
else
    for h in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
        mountpoint -q "$h" && CGS+=("$h/failoverd-test-$ID")
    done
fi
NSPAWN='' LEADER=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local rc=$? p d left
    trap - EXIT INT TERM
    if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
        # SIGTERM to nspawn = orderly poweroff of the container.
        kill -TERM "$NSPAWN" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$NSPAWN" 2>/dev/null; then
            say "container did not power off in 20 s, killing it"
            # Killing PID 1 of the container's pid namespace kills everything inside it.
            [ -n "$LEADER" ] && kill -KILL "$LEADER" 2>/dev/null
            kill -KILL "$NSPAWN" 2>/dev/null
        fi
    fi
    [ -n "$NSPAWN" ] && wait "$NSPAWN" 2>/dev/null
    # Anything still in our private cgroups was started by this run: kill it by PID.
    for _ in 1 2 3 4 5; do
        left=''
        for d in "${CGS[@]}"; do
            [ -d "$d" ] || continue
            while read -r p; do
                left=1; kill -KILL "$p" 2>/dev/null
            done < <(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)
        done
        [ -z "$left" ] && break
        sleep 0.5
    done
    for d in "${CGS[@]}"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        [ -d "$d" ] && say "WARNING: could not remove cgroup $d"
    done
    if [ -n "${KEEP_RUNDIR:-}" ]; then say "kept $RUN"; else rm -rf "$RUN"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 2' INT TERM
for d in "${CGS[@]}"; do mkdir "$d" || die "cannot create cgroup $d"; done

# ---- 3. boot: pure cgroup2 inside, as on a Debian 12 host.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
T0=$(now_ms)
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
(
    for d in "${CGS[@]}"; do echo "$BASHPID" > "$d/cgroup.procs"; done
    # pdeathsig: if this script is SIGKILLed, nspawn still gets SIGTERM and powers off.
    exec setpriv --pdeathsig TERM -- unshare --mount --propagation private -- \
        bash "$SELF" __inner "$RUN" "$ROOTFS" "$MACHINE" "$REPO" "$BIN"
) > "$RUN/console.log" 2>&1 &
NSPAWN=$!
boot_fail() { say "---- container console:"; tail -40 "$RUN/console.log" >&2; die "$*"; }
for _ in $(seq 150); do               # the container's PID 1 is a child of nspawn
    kill -0 "$NSPAWN" 2>/dev/null || boot_fail "systemd-nspawn exited early"
    # shellcheck disable=SC2013 # children: PIDs separated by spaces
    for c in $(cat /proc/"$NSPAWN"/task/*/children 2>/dev/null); do
        [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && LEADER=$c
    done
    [ -n "$LEADER" ] && break
    sleep 0.2
done
[ -n "$LEADER" ] || boot_fail "the container's PID 1 (systemd) did not appear in 30 s"
DEADLINE=$(( $(now_ms) + 60000 ))
state=''
while :; do                          # PID 1 may not have its private socket yet: retry
    kill -0 "$NSPAWN" 2>/dev/null || boot_fail "systemd-nspawn exited during boot"
    left=$(( (DEADLINE - $(now_ms)) / 1000 ))
    [ "$left" -gt 0 ] || break
    state=$(nsenter -t "$LEADER" -a -- timeout "$left" systemctl is-system-running --wait 2>&1)
    case $state in running|degraded) break;; esac
    sleep 0.5
done
case $state in running|degraded) ;; *) boot_fail "systemd in the container did not boot: $state";; esac
say "container $MACHINE up ($state) in $(( $(now_ms) - T0 )) ms, PID 1 = host pid $LEADER"
echo "READY $LEADER"
# ---- 4. until the test closes our stdin (or dies: EOF too).
while read -r _; do :; done
exit 0
