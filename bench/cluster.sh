#!/usr/bin/env bash
# Three agents voting, on loopback (issue 15): how together and how fast they switch when the
# primary's backend dies and comes back, and what the peer API costs in steady state.
#
#   bench/cluster.sh [CYCLES]      (default 12: 12 failovers + 12 failbacks = 24 transitions)
#   FAILOVERD_BIN=/path/to/failoverd bench/cluster.sh 12   (another build, e.g. the code before a change)
#
# Setting: interval 300 ms, retry_interval 200 ms, timeout 200 ms, fall 2, rise 2, quorum
# majority, cluster.period 2 s. Agents on 127.0.182.1-3 (DNS 15463, peer API 18563, dashboard
# 18564), backends (bench/backend.c) on the same addresses, port 18590. A Python poller asks all
# three agents every 10 ms over UDP and records when each one answers the new node.
#
# Per transition: first-to-last spread (the last agent's first new answer minus the first's),
# time until all three answer the new node (from the kill or the restart), polls where the
# agents' answers differ; the single-agent bound interval + (fall − 1) × retry + timeout; extra
# probes (the agents' /metrics, from builds that count them). Steady state: every byte to and
# from the peer port for 30 s, counted by an nftables table of counters (no rule drops
# anything; the table is removed on exit). Needs root for nft; every loop is bounded; nothing
# outside 127.0.0.0/8 is contacted. Results: bench/results/cluster-<UTC date-time>.md
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-12}

if [ -n "${FAILOVERD_BIN:-}" ]; then
  bin=$FAILOVERD_BIN
else
  cargo build --release --quiet
  bin=$PWD/target/release/failoverd
fi
work=$(mktemp -d)
declare -A pids=()
nft_table=failoverd_bench_$$
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  nft delete table inet "$nft_table" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -Wall -o "$work/backend" bench/backend.c

ips=(127.0.182.1 127.0.182.2 127.0.182.3)
web_port=18590 dns_port=15463 peer_port=18563 dash_port=18564
export FAILOVERD_CLUSTER_SECRET="benchmark secret, not a real one"
timing="{ interval: 300ms, retry_interval: 200ms, timeout: 200ms, fall: 2, rise: 2 }"

config() { # config ME
  local me=$1
  cat <<EOF
zone: ha.example.com
self: node$me
dns: { listen: ["${ips[me-1]}:$dns_port"], ttl: 5s }
dashboard: { listen: "${ips[me-1]}:$dash_port" }
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

for ip in "${ips[@]:1}"; do "$work/backend" -t 3600 "http:$ip:$web_port" >/dev/null 2>&1 & pids[web-$ip]=$!; done
for i in 1 2 3; do
  config "$i" > "$work/config-$i.yaml"
  RUST_LOG=warn nice -n 10 "$bin" run --config "$work/config-$i.yaml" --state-dir "$work/state-$i" 2>"$work/agent-$i.log" &
  pids[agent-$i]=$!
  sleep 0.1
done

# Steady-state peer traffic, then the transitions: the poller starts and kills node1's backend.
python3 - "$work/backend" "$web_port" "$dns_port" "$dash_port" "$cycles" "$nft_table" "$peer_port" \
  "${ips[@]}" > "$work/result.txt" <<'PY'
import json, os, random, signal, socket, statistics, struct, subprocess, sys, time, urllib.request
backend, web, dns, dash, cycles, table, peer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
ips = sys.argv[8:11]
INTERVAL, RETRY, TIMEOUT, FALL = 0.3, 0.2, 0.2, 2
BOUND = INTERVAL + (FALL - 1) * RETRY + TIMEOUT

def query(qid):
    name = b"".join(bytes([len(p)]) + p for p in b"app.ha.example.com".split(b".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)

def first_a(packet):
    if len(packet) < 12: return None
    an = struct.unpack(">H", packet[6:8])[0]
    i = 12
    while packet[i] != 0: i += packet[i] + 1
    i += 5
    for _ in range(an):
        if packet[i] & 0xC0 == 0xC0: i += 2
        else:
            while packet[i] != 0: i += packet[i] + 1
            i += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", packet[i:i + 10]); i += 10
        if rtype == 1 and rdlen == 4: return socket.inet_ntoa(packet[i:i + 4])
        i += rdlen
    return None

socks = []
for ip in ips:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2); s.connect((ip, dns)); socks.append(s)

def poll():
    answers = []
    for k, s in enumerate(socks):
        qid = random.randrange(65536)
        try:
            s.send(query(qid)); answers.append(first_a(s.recv(4096)))
        except OSError:
            answers.append(None)
    return answers

web_proc = None
def stop_web_at_exit():
    if web_proc is not None and web_proc.poll() is None:
        web_proc.kill(); web_proc.wait()
import atexit; atexit.register(stop_web_at_exit)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
def start_web():
    global web_proc
    web_proc = subprocess.Popen([backend, "-t", "3600", f"http:{ips[0]}:{web}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def kill_web():
    web_proc.kill(); web_proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline:   # nothing else (a leftover) may answer in its place
        try: socket.create_connection((ips[0], web), timeout=0.2).close()
        except OSError: return
        time.sleep(0.05)
    sys.exit(f"something still answers on {ips[0]}:{web} after the kill")

def metric(ip, name):
    try:
        text = urllib.request.urlopen(f"http://{ip}:{dash}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    vals = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name) and not l.startswith("#")]
    return sum(vals) if vals else None

start_web()
deadline = time.time() + 30
while poll() != [ips[0]] * 3:
    if time.time() > deadline: sys.exit("agents did not converge on node1 in 30 s")
    time.sleep(0.1)

# Steady state: 30 s of peer traffic, every byte both ways, with all backends up.
time.sleep(3)
subprocess.run(["nft", "-f", "-"], input=f"""table inet {table} {{
  chain out {{ type filter hook output priority 0; policy accept;
    ip daddr 127.0.182.0/24 tcp dport {peer} counter
    ip saddr 127.0.182.0/24 tcp sport {peer} counter
  }}
}}""".encode(), check=True)
time.sleep(30)
listing = subprocess.run(["nft", "-j", "list", "table", "inet", table], capture_output=True, check=True).stdout
steady = sum(r["counter"]["bytes"] for item in json.loads(listing)["nftables"] if "rule" in item
             for r in item["rule"]["expr"] if "counter" in r)
subprocess.run(["nft", "delete", "table", "inet", table], check=True)
# Every byte is sent by one agent and received by another: per agent per minute, both ways.
per_agent_min = steady * 2 / 3 * 2

extra0 = [metric(ip, "failoverd_check_extra_probes") for ip in ips]
rows = {"down": [], "up": []}
for c in range(cycles):
    for kind, want in (("down", ips[1]), ("up", ips[0])):
        time.sleep(random.uniform(1.0, 2.0))
        if kind == "down": kill_web()
        else: start_web()
        t0 = time.monotonic()
        first = [None] * 3
        split = 0; polls = 0
        while time.monotonic() - t0 < 10:
            a = poll(); now = time.monotonic() - t0; polls += 1
            if len(set(a)) > 1: split += 1
            for k in range(3):
                if first[k] is None and a[k] == want: first[k] = now
            if all(f is not None for f in first): break
            time.sleep(0.01)
        if any(f is None for f in first): sys.exit(f"{kind} {c}: not all moved in 10 s: {first}")
        rows[kind].append((max(first) - min(first), max(first), min(first), split, polls))
extra1 = [metric(ip, "failoverd_check_extra_probes") for ip in ips]

def ms(x): return f"{x * 1000:.0f}"
def med(xs): return statistics.median(xs)
out = {}
for kind in ("down", "up"):
    r = rows[kind]
    spreads = [x[0] for x in r]; alls = [x[1] for x in r]; firsts = [x[2] for x in r]; splits = [x[3] for x in r]
    out[kind] = (f"| {'failover' if kind == 'down' else 'failback'} | {len(r)} | {ms(med(spreads))} ms | {ms(min(spreads))}–{ms(max(spreads))} ms "
                 f"| {ms(med(firsts))} ms | {ms(med(alls))} ms | {ms(min(alls))}–{ms(max(alls))} ms | {med(splits):.0f} ({min(splits)}–{max(splits)}) of {med([x[4] for x in r]):.0f} |")
    out[kind + "_within"] = sum(1 for a in alls if a <= BOUND + 0.05)
extra = "n/a (this build does not count them)" if None in extra0 + extra1 else f"{sum(extra1) - sum(extra0):.0f} over {2 * cycles} transitions, all agents together"
print(out["down"]); print(out["up"])
print(f"BOUND {ms(BOUND)}")
print(f"WITHIN {out['down_within']} of {cycles}")
print(f"EXTRA {extra}")
print(f"TRAFFIC {per_agent_min / 1024:.1f}")
PY

mkdir -p bench/results
out="bench/results/cluster-$(date -u +%Y-%m-%dT%H%MZ).md"
{
  echo "# Three agents voting — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); build: $bin ($("$bin" --version 2>/dev/null | head -1)); agents under nice -n 10."
  echo "Command: bench/cluster.sh $cycles. Timing $timing, quorum majority, cluster.period 2s. node1's backend is killed and restarted at random 1–2 s gaps; a poller asks all three agents every ~10 ms."
  echo
  echo "| transition | n | first-to-last spread, median | range | first agent moved, median | all moved, median | range | polls seeing two answers, median (range) of polls |"
  echo "|---|---|---|---|---|---|---|---|"
  grep '^|' "$work/result.txt"
  echo
  echo "Single-agent bound interval + (fall − 1) × retry + timeout: $(sed -n 's/^BOUND //p' "$work/result.txt") ms; failovers with all three moved within it + 50 ms: $(sed -n 's/^WITHIN //p' "$work/result.txt")."
  echo "Extra probes (a peer's suspicion): $(sed -n 's/^EXTRA //p' "$work/result.txt")."
  echo "Peer traffic in steady state, measured (IP bytes to and from the peer port over 30 s, nftables counters): $(sed -n 's/^TRAFFIC //p' "$work/result.txt") KiB per agent per minute, sent and received together."
} > "$out"
cat "$out"
