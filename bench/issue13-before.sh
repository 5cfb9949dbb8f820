#!/usr/bin/env bash
# Issue 13's tests against a build from before its fixes: every one must fail, on its symptom.
# Builds failoverd at $BEFORE (default b77afc5, the last commit before the fixes) in a scratch
# worktree, runs this tree's end-to-end tests against it through FAILOVERD_TEST_BINARY, runs
# bench/issue13-before.patch's unit tests (points 4, 9 and 13, written against the old API) in it,
# and asks its check-config about the invalid fixtures of points 7, 9 and 10. Writes
# bench/results/before-fix-<UTC time>.md; exits 1 if any test passes on the old build.
#
#   bench/issue13-before.sh        (as root, as the tests are; about 10 minutes from cold)
#   BEFORE_TARGET=/path/to/target bench/issue13-before.sh   reuses a build directory
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
before=${BEFORE:-b77afc5}
scratch=$(mktemp -d)
wt=$scratch/before
git worktree add -q --detach "$wt" "$before"
trap 'git -C "$root" worktree remove --force "$wt"; rm -rf "$scratch"' EXIT
git -C "$wt" apply "$root/bench/issue13-before.patch"
export CARGO_TARGET_DIR=${BEFORE_TARGET:-$root/target/before}
(cd "$wt" && cargo build -q --bin failoverd)
old=$CARGO_TARGET_DIR/debug/failoverd
unset CARGO_TARGET_DIR
cargo test -q --no-run --test connections --test wire --test hostile --test exits_and_replays \
  --test agent --test cli

stamp=$(date -u +%Y-%m-%dT%H%MZ)
out=bench/results/before-fix-$stamp.md
passed=0
row() { # point, what, log: the first panic message of the log, with left/right when asserted
  local msg left right
  msg=$(grep -A1 -m1 'panicked at' "$3" | tail -1 | cut -c1-160 | tr '|' '/' || true)
  left=$(grep -m1 '^  left: ' "$3" | cut -c9-80 | tr '|' '/' || true)
  right=$(grep -m1 '^ right: ' "$3" | cut -c9-80 | tr '|' '/' || true)
  [ -n "$left" ] && msg="$msg (got $left, want $right)"
  echo "| $1 | $2 | ${msg:-?} |" >>"$out"
}
{
  echo "# Issue 13's tests against the build before the fixes ($stamp)"
  echo
  echo "\`bench/issue13-before.sh\`: this tree ($(git rev-parse --short HEAD)) tested against failoverd"
  echo "built at $before. Every test must fail; the message is the test's first failed assertion."
  echo
  echo "| point | test | fails with |"
  echo "|---|---|---|"
} >"$out"
e2e() { # point, file, test
  local log=$scratch/$2-$3.log
  if FAILOVERD_TEST_BINARY=$old timeout 300 cargo test -q --test "$2" -- --exact "$3" \
      --test-threads=1 >"$log" 2>&1; then
    echo "| $1 | $2::$3 | **PASSED on the old build** |" >>"$out"
    passed=$((passed + 1))
  else
    row "$1" "$2::$3" "$log"
  fi
}
e2e 1 connections idle_tcp_floods_leave_checks_dns_and_the_dashboard_working_under_ulimit_1024
e2e 1 connections half_sent_messages_keep_little_memory
e2e 1 connections the_peer_api_and_the_dashboard_close_idle_and_trickling_connections
e2e 1 connections out_of_descriptors_the_agent_says_so_and_accept_backs_off_instead_of_spinning
e2e 2 wire a_flood_of_malformed_edns_with_a_stalled_log_reader_never_stops_answering
e2e 3 wire the_do_bit_is_copied_back_and_any_is_minimal
e2e "4, 5, 13" hostile a_member_flooding_overrides_cannot_stop_failover
e2e 6 exits_and_replays a_request_replayed_after_ten_thousand_fresh_ones_is_refused
e2e 7 exits_and_replays durations_that_would_overflow_are_refused_with_exit_2
e2e 7 exits_and_replays a_failing_task_stops_the_agent_with_exit_1_and_names_it
e2e 7 exits_and_replays losing_the_dns_listener_stops_the_agent_with_exit_1
e2e 8 agent a_full_state_dir_never_makes_the_serial_go_back
# At the 16 MiB body_limit the fix allows, the old quadratic scan stays near the 1 s timeout:
# this one fails on the old build only some of the time (1,682 ms once), so it is reported but
# not counted; point 9 fails for certain in the old-API scan test and the fixture below.
log=$scratch/endless-body.log
if FAILOVERD_TEST_BINARY=$old timeout 300 cargo test -q --test hostile -- --exact \
    an_endless_body_fails_the_probe_within_its_timeout --test-threads=1 >"$log" 2>&1; then
  echo "| 9 | hostile::an_endless_body_fails_the_probe_within_its_timeout | passed (timing; not counted) |" >>"$out"
else
  row "9" "hostile::an_endless_body_fails_the_probe_within_its_timeout (not counted)" "$log"
fi
e2e 11 agent planted_symlinks_in_the_state_dir_are_not_followed
e2e 12 hostile a_sighup_during_start_is_a_reload_not_a_kill
e2e 13 hostile an_override_that_cannot_be_stored_is_refused_and_not_applied
e2e 13 cli commands_that_print_exit_1_with_a_message_when_stdout_is_closed

for unit in 4:overrides::before_the_fix::a_rogue_pin_at_the_largest_version_can_be_cleared \
    9:check::http::before_the_fix::scanning_is_linear_in_the_body \
    13:overrides::before_the_fix::a_peer_reason_with_a_line_break_is_refused; do
  point=${unit%%:*} t=${unit#*:}
  log=$scratch/unit-${t//:/_}.log
  if (cd "$wt" && CARGO_TARGET_DIR=${BEFORE_TARGET:-$root/target/before} \
      cargo test -q --lib -- --exact "$t") >"$log" 2>&1; then
    echo "| $point | (old API) $t | **PASSED on the old build** |" >>"$out"
    passed=$((passed + 1))
  else
    row "$point" "(old API) $t" "$log"
  fi
done

{
  echo
  echo "The invalid fixtures of points 7, 9 and 10 (config/tests.rs expects each to be refused):"
  echo
  echo "| fixture | old check-config |"
  echo "|---|---|"
} >>"$out"
for f in interval-overflow retry-overflow body-limit-too-large node-id-case check-id-case \
    hostname-is-nameserver ns-ttl-too-long ttl-too-long refresh-zero; do
  if "$old" check-config --config "tests/configs/invalid/$f.yaml" >/dev/null 2>&1; then
    echo "| $f.yaml | exit 0: accepted |" >>"$out"
  else
    echo "| $f.yaml | **refused on the old build** |" >>"$out"
    passed=$((passed + 1))
  fi
done
cat "$out"
if ((passed)); then
  echo "bench/issue13-before.sh: $passed check(s) passed on the old build" >&2
  exit 1
fi
echo "bench/issue13-before.sh: every test fails on the old build; $out"
