#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs the Debian packages the tests drive when they
# are missing, then runs every test target. Run it as root (as CI does): the install tests create
# a user inside a staging root, and missing packages are installed with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
# The SMTP server the notification tests deliver to; Debian's python, not the first on PATH.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
# The dashboard tests load the page in a real headless browser.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The install tests check the systemd unit and lint every shell script.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
# useradd --prefix (install.sh into a staging root).
command -v useradd >/dev/null 2>&1 || need+=(passwd)
# The network-namespace tests (tests/netns.rs, asymmetric faults; tests/witness.rs, witnesses): namespaces and veths, one-way
# drops, and HTTP requests made from inside a namespace.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v curl >/dev/null 2>&1 || need+=(curl)
# tests/systemd.rs: the unit under a real systemd, booted with systemd-nspawn on a Debian rootfs
# that mmdebstrap builds once from this machine's mirror (cached in /var/cache/systemd-recipe).
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
# The resolver tier (tests/resolvers.rs): BIND and Unbound in front of the agents, dnsviz and
# kdig checking what the agents serve.
command -v named >/dev/null 2>&1 || need+=(bind9)
command -v unbound >/dev/null 2>&1 || need+=(unbound)
command -v dnsviz >/dev/null 2>&1 || need+=(dnsviz)
# Strict DNS client: reports truncated answers that are not whole messages (tests/wire.rs).
command -v kdig >/dev/null 2>&1 || need+=(knot-dnsutils)
# Real secondaries fed by zone transfer and NOTIFY (tests/secondaries.rs): NSD, Knot, BIND.
command -v nsd >/dev/null 2>&1 || need+=(nsd)
# RFC 2136 update targets (tests/publish.rs): BIND (above), Knot, PowerDNS with its SQLite
# backend (the bind backend takes no updates); nsupdate comes with bind9-dnsutils.
command -v knotd >/dev/null 2>&1 || need+=(knot)
command -v nsupdate >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v pdns_server >/dev/null 2>&1 || need+=(pdns-server)
ls /usr/lib/*/pdns/libgsqlite3backend.so >/dev/null 2>&1 || need+=(pdns-backend-sqlite3)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)

if ((${#need[@]})); then
  echo "scripts/test.sh: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo test --all-targets "$@"

# A short fuzz run of every target (about a minute each; FUZZ_SECONDS=0 skips it for a quick
# local loop). It builds with AddressSanitizer, so its first build takes a few minutes.
if [ "${FUZZ_SECONDS:-60}" != 0 ]; then
  ./scripts/fuzz.sh
fi
