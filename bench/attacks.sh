#!/usr/bin/env bash
# The bounded attacks of issue 13, run against the release binary: the same end-to-end tests CI
# runs against the debug build (tests/connections.rs, hostile.rs, wire.rs, exits_and_replays.rs,
# and the state-dir tests of agent.rs and the closed-stdout test of cli.rs), pointed
# at target/release/failoverd through FAILOVERD_TEST_BINARY. Every attack is bounded in count
# and time and stays on loopback; each test asserts that failover (or answering) still works.
# Writes bench/results/attacks-<UTC time>.md with the measured lines the tests print.
#
#   bench/attacks.sh          (as root: the tests set descriptor limits and mount a tmpfs)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin failoverd
stamp=$(date -u +%Y-%m-%dT%H%MZ)
out=bench/results/attacks-$stamp.md
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export FAILOVERD_TEST_BINARY=$PWD/target/release/failoverd
{
  cargo test --test connections --test hostile --test wire --test exits_and_replays -- \
    --nocapture --test-threads=1
  # The full state dir and the planted symlinks (points 8 and 11), a closed stdout (13).
  cargo test --test agent -- --nocapture --test-threads=1 a_full_state_dir planted_symlinks
  cargo test --test cli -- --nocapture stdout_is_closed
} >"$log" 2>&1 || { tail -60 "$log"; echo "bench/attacks.sh: an attack test failed" >&2; exit 1; }
{
  echo "# Attacks against the release binary ($stamp, $(git rev-parse --short HEAD))"
  echo
  echo "\`bench/attacks.sh\`: tests/connections.rs, hostile.rs, wire.rs, exits_and_replays.rs, the"
  echo "state-dir tests of agent.rs and the closed-stdout test of cli.rs, with"
  echo "FAILOVERD_TEST_BINARY=target/release/failoverd. Lines the tests print:"
  echo
  echo '```'
  grep -E '^(test |.*(caps|RSS|fds|descriptors|failover|took|ms|MiB|closed|lines|packets))' "$log" \
    | grep -v '^test result' | head -200
  grep '^test result' "$log"
  echo '```'
} >"$out"
echo "bench/attacks.sh: all attack tests passed; $out"
