#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer with AddressSanitizer) of what outsiders and
# peers control: the DNS request path, a peer's answer body with its overrides and serial, and
# the configuration parser. Runs every target for FUZZ_SECONDS (default 60) from the corpus kept
# in fuzz/corpus/<target>; a crash, a failed assertion or a leak fails the run, and the input
# that caused it is left in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                   every target, 60 s each (what scripts/test.sh runs in CI)
#   FUZZ_SECONDS=600 scripts/fuzz.sh dns_query
#
# Stable Rust: cargo-fuzz needs nightly flags (-Zsanitizer), which RUSTC_BOOTSTRAP allows here.
# New corpus entries found during a run go to a scratch copy, so the run leaves the tree as it
# was; to keep them, run `cargo fuzz cmin TARGET` and commit fuzz/corpus.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
targets=("$@")
((${#targets[@]})) || targets=(dns_query peer_answer config_parse)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  cp -r "corpus/$target/." "$scratch/$target/"
  log="$scratch/$target.log"
  if cargo fuzz run "$target" "$scratch/$target" -- -max_total_time="$seconds" \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $target: ${runs:-?} executions in ${seconds}s, no crash"
  else
    echo "fuzz $target: FAILED (input saved under fuzz/artifacts/$target/)" >&2
    tail -40 "$log" >&2
    status=1
  fi
done
exit $status
