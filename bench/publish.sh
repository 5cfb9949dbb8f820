#!/usr/bin/env bash
# RFC 2136 publishing against real BIND 9, Knot and PowerDNS on loopback (127.0.164.0/24): the
# median time from the agent's change to the record on each server over 20 changes (10
# failovers, 10 failbacks), the UPDATE round trip, the messages and the agent's CPU.
#
#   bench/publish.sh        (as root: the servers' addresses are added to lo, removed after)
#
# It is the test `measure_time_to_record_on_each_server` (2 rounds in the suite, 20 here) of tests/publish.rs (which
# starts and kills every server by PID); results: bench/results/publish-<UTC date-time>.md
set -euo pipefail
cd "$(dirname "$0")/.."
out="bench/results/publish-$(date -u +%Y-%m-%dT%H%MZ).md"
{
  echo "# RFC 2136 publishing: time to the record on each server ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "Load at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; debug build (cargo test)."
  echo
  echo '```text'
  FAILOVERD_BENCH_ROUNDS=20 nice -n 10 cargo test --quiet --test publish -- --nocapture measure_time_to_record 2>&1 |
    grep -E 'median|agent|CPU'
  echo '```'
} | tee "$out"
