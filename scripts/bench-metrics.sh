#!/usr/bin/env bash
# Measures what serving /metrics costs a node: its CPU time over a window with nobody scraping
# (the reference) against the same window with a scrape every 50 ms, alternating the two,
# and the scrapes' own latency. One leader on a throwaway PostgreSQL, idle otherwise.
#
# Usage: scripts/bench-metrics.sh            (WINDOW_S=20 PAIRS=3 by default)
# Needs: the host's PostgreSQL server binaries, python3, a release build (build it first:
# `cargo build --release`). Prints a Markdown table for docs/PERFORMANCE.md. Touches only a
# temp dir and loopback ports.
set -euo pipefail

window=${WINDOW_S:-20}
pairs=${PAIRS:-3}
# shellcheck source=scripts/bench-pg.sh
source "$(dirname "$0")/bench-pg.sh"
createdb bench_metrics
port=$(free_port)
start_node metrics bench_metrics "$port"
node_pid=${pids[-1]}

python3 - "$node_pid" "http://127.0.0.1:$port/metrics" "$token" "$window" "$pairs" <<'PY'
import os, statistics, sys, time, urllib.request
pid, url, token, window, pairs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
tick = os.sysconf("SC_CLK_TCK")

def cpu_seconds():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

def measure(scrape):
    latencies, start_cpu, start = [], cpu_seconds(), time.monotonic()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() - start < window:
        if scrape:
            t0 = time.monotonic()
            with urllib.request.urlopen(request) as answer:
                answer.read()
            latencies.append((time.monotonic() - t0) * 1000)
            time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))
        else:
            time.sleep(0.05)
    elapsed = time.monotonic() - start
    return (cpu_seconds() - start_cpu) / elapsed * 100, latencies

idle, scraped, latencies = [], [], []
for i in range(pairs):
    for scrape in ([False, True] if i % 2 == 0 else [True, False]):
        share, lat = measure(scrape)
        (scraped if scrape else idle).append(share)
        latencies += lat
lat = sorted(latencies)
print(f"{pairs} alternating pairs of {window:.0f} s windows, one idle leader, scrapes every 50 ms ({len(lat)} scrapes)\n")
print("| window | node CPU (% of one core), median | per window |")
print("| --- | --- | --- |")
print(f"| nobody scraping (reference) | {statistics.median(idle):.2f} | {', '.join(f'{v:.2f}' for v in idle)} |")
print(f"| /metrics every 50 ms | {statistics.median(scraped):.2f} | {', '.join(f'{v:.2f}' for v in scraped)} |")
print(f"\nscrape latency: p50 {lat[len(lat)//2]:.2f} ms, p99 {lat[int(len(lat)*0.99)]:.2f} ms, max {lat[-1]:.2f} ms")
PY
