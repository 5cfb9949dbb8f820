# Sourced by bench/quick.sh and bench/hickory-collapse.sh: a temporary directory ($work) and the
# background processes started into $pids, both cleaned up when the script exits.
# shellcheck shell=bash
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
