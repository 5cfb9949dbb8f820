#!/usr/bin/env bash
# Three agents voting, on loopback: time from a backend dying until all three agents answer the
# new node (and back), with a 1 s and a 30 s interval; and the peer traffic of one agent.
#
#   bench/cluster.sh [TRIALS]      (default 3)
#
# Agents on 127.0.0.41-43 (DNS 15453, peer API 18553), backends (bench/backend.c) on the same
# addresses, port 18580. Every loop is bounded; nothing outside 127.0.0.0/8 is contacted.
# Results: bench/results/cluster-<UTC date-time>.md
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-3}

command -v dig >/dev/null || { apt-get update -qq && apt-get install -y -qq bind9-dnsutils >/dev/null; }
cargo build --release --quiet
bin=$PWD/target/release/failoverd
work=$(mktemp -d)
declare -A pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -Wall -o "$work/backend" bench/backend.c

ips=(127.0.0.41 127.0.0.42 127.0.0.43)
web_port=18580 dns_port=15453 peer_port=18553
export FAILOVERD_CLUSTER_SECRET="benchmark secret, not a real one"

start_web() { "$work/backend" -t 3600 "http:$1:$web_port" >/dev/null 2>&1 & pids[web-$1]=$!; }
stop_web() { kill "${pids[web-$1]}" 2>/dev/null || true; wait "${pids[web-$1]}" 2>/dev/null || true; }
answer() { dig @"$1" -p "$dns_port" app.ha.example.com +short +time=1 +tries=1 2>/dev/null | head -1; }
ms() { date +%s%3N; }

config() { # config ME TIMING
  local me=$1 timing=$2
  cat <<EOF
zone: ha.example.com
self: node$me
dns: { listen: ["${ips[me-1]}:$dns_port"], ttl: 5s }
dashboard: { listen: "${ips[me-1]}:0" }
cluster: { listen: "${ips[me-1]}:$peer_port", period: 2s }
defaults: $timing
nodes:
  - { id: node1, address: ${ips[0]}, priority: 30 }
  - { id: node2, address: ${ips[1]}, priority: 20 }
  - { id: node3, address: ${ips[2]}, priority: 10 }
checks:
  - { id: web, type: http, url: "http://{address}:$web_port/" }
hostnames:
  - { name: app, checks: [web] }
EOF
}

start_agents() { # start_agents TIMING
  for i in 1 2 3; do
    config "$i" "$1" > "$work/config-$i.yaml"
    RUST_LOG=warn "$bin" run --config "$work/config-$i.yaml" --state-dir "$work/state-$i" 2>"$work/agent-$i.log" &
    pids[agent-$i]=$!
  done
  for _ in $(seq 1 300); do
    local ok=0
    for ip in "${ips[@]}"; do [ "$(answer "$ip")" = "${ips[0]}" ] && ok=$((ok + 1)); done
    [ "$ok" = 3 ] && return 0
    sleep 0.1
  done
  echo "agents did not converge" >&2; return 1
}
stop_agents() { for i in 1 2 3; do kill "${pids[agent-$i]}" 2>/dev/null || true; wait "${pids[agent-$i]}" 2>/dev/null || true; unset "pids[agent-$i]"; done; }

# until_all WANT LIMIT_S: ms until all three agents answer WANT, with the time each first did.
until_all() {
  local want=$1 limit=$2 t0 now first=() n
  t0=$(ms)
  for _ in $(seq 1 $((limit * 20))); do
    n=0
    for i in 0 1 2; do
      if [ -z "${first[i]:-}" ] && [ "$(answer "${ips[i]}")" = "$want" ]; then first[i]=$(( $(ms) - t0 )); fi
      [ -n "${first[i]:-}" ] && n=$((n + 1))
    done
    if [ "$n" = 3 ]; then now=$(( $(ms) - t0 )); echo "$now ${first[*]}"; return 0; fi
    sleep 0.05
  done
  echo "timeout"; return 1
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { printf '%s\n' "$@" | sort -n | sed -n '1p;$p' | paste -sd- ; }

declare -A rows=()
for setting in "1s|{ interval: 1s, retry_interval: 500ms, timeout: 300ms, fall: 2, rise: 2 }|15" \
               "30s|{ interval: 30s, retry_interval: 5s, timeout: 5s, fall: 2, rise: 2 }|60"; do
  IFS='|' read -r name timing limit <<<"$setting"
  for ip in "${ips[@]}"; do start_web "$ip"; done
  start_agents "$timing"
  fo=() fb=() spread=()
  for _ in $(seq 1 "$trials"); do
    sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 1 + rand() * 2 }')"
    stop_web "${ips[0]}"
    read -r all a b c < <(until_all "${ips[1]}" "$limit")
    fo+=("$all"); spread+=("$(( $(printf '%s\n' "$a" "$b" "$c" | sort -n | tail -1) - $(printf '%s\n' "$a" "$b" "$c" | sort -n | head -1) ))")
    start_web "${ips[0]}"
    read -r all _ < <(until_all "${ips[0]}" "$limit")
    fb+=("$all")
  done
  rows[$name]="| ${name} interval | $(median "${fo[@]}") ms | $(range "${fo[@]}") ms | $(median "${spread[@]}") ms | $(median "${fb[@]}") ms | $(range "${fb[@]}") ms | ${fo[*]} / ${fb[*]} |"
  stop_agents
  for ip in "${ips[@]}"; do stop_web "$ip"; done
done

# Peer traffic: one agent's answer to a signed pull, and the request, sizes measured for real;
# each agent pulls each of the others once per period.
for ip in "${ips[@]}"; do start_web "$ip"; done
start_agents "{ interval: 1s, retry_interval: 500ms, timeout: 300ms, fall: 2, rise: 2 }"
sleep 3
read -r req_bytes resp_bytes < <(/usr/bin/python3 - "${ips[1]}" "$peer_port" <<'PY'
import hashlib, hmac, http.client, os, secrets, struct, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
key = os.environ["FAILOVERD_CLUSTER_SECRET"].strip().encode()
agent, now, nonce, path = "node1", str(int(time.time())), secrets.token_hex(16), "/v1/observations"
mac = hmac.new(key, digestmod=hashlib.sha256)
for part in [b"failoverd-v1 request", agent.encode(), now.encode(), nonce.encode(), path.encode()]:
    mac.update(struct.pack(">Q", len(part))); mac.update(part)
headers = {"x-failoverd-agent": agent, "x-failoverd-time": now, "x-failoverd-nonce": nonce,
           "x-failoverd-signature": mac.hexdigest(), "user-agent": "failoverd/0.1.0 (peer)", "accept": "*/*"}
c = http.client.HTTPConnection(ip, port, timeout=5)
c.request("GET", path, headers=headers)
r = c.getresponse(); body = r.read()
assert r.status == 200, (r.status, body)
req = len(f"GET {path} HTTP/1.1\r\nhost: {ip}:{port}\r\n") + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2
resp = len(body) + sum(len(k) + len(v) + 4 for k, v in r.getheaders()) + len("HTTP/1.1 200 OK\r\n") + 2
print(req, resp)
PY
)
stop_agents
per_min=$(( (req_bytes + resp_bytes) * 2 * 30 ))   # 2 peers, a pull every 2 s

mkdir -p bench/results
out="bench/results/cluster-$(date -u +%Y-%m-%dT%H%MZ).md"
{
  echo "# Three agents voting — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -r); failoverd release build; quorum majority, cluster.period 2s; $trials trials."
  echo "Command: bench/cluster.sh $trials. The primary's web server is killed at a random point; dig asks all three agents every 50 ms."
  echo
  echo "| setting | failover: all three on node2, median | range | first-to-last agent, median | failback median | range | trials (ms) failover / failback |"
  echo "|---|---|---|---|---|---|---|"
  echo "${rows[1s]}"
  echo "${rows[30s]}"
  echo
  echo "1 s: interval 1s, retry 500ms, timeout 300ms, fall 2, rise 2. 30 s: the defaults (30s, 5s, 5s, 2, 2)."
  echo
  echo "Peer traffic of one agent (3 nodes × 1 check): a pull request is $req_bytes bytes of HTTP, an answer $resp_bytes bytes;"
  echo "each agent pulls 2 peers every 2 s and answers their 2 pulls: about $(( per_min * 2 / 1024 )) KiB per minute in and out together"
  echo "(HTTP bytes; TCP/IP headers add about 40 bytes per segment; connections are kept alive)."
} > "$out"
cat "$out"
