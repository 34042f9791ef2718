#!/usr/bin/env bash
# Measures what schedules cost an idle leader: two leaders on their own databases of one
# throwaway PostgreSQL, one without schedules (the reference) and one with a backup and a
# verify schedule whose slots fall outside the run, their CPU time read over the same windows.
#
# Usage: scripts/bench-schedules.sh            (WINDOW_S=20 WINDOWS=5 by default)
# Needs: the host's PostgreSQL server binaries, python3, a release build (built if missing).
# Prints a Markdown table for docs/PERFORMANCE.md. Touches only a temp dir and loopback ports.
set -euo pipefail

window=${WINDOW_S:-20}
windows=${WINDOWS:-5}
# shellcheck source=scripts/bench-pg.sh
source "$(dirname "$0")/bench-pg.sh"
createdb bench_plain
createdb bench_scheduled
# Daily slots twelve hours from now: none comes during the run, as on most of a real day.
hour=$(( ($(date -u +%-H) + 12) % 24 ))
start_node plain bench_plain "$(free_port)"
plain_pid=${pids[-1]}
start_node scheduled bench_scheduled "$(free_port)" \
  --backup-schedule "0 $hour * * *" --verify-schedule "30 $hour * * *"
scheduled_pid=${pids[-1]}

python3 - "$plain_pid" "$scheduled_pid" "$window" "$windows" "$hour" <<'PY'
import os, statistics, sys, time
plain, scheduled, window, windows, hour = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
tick = os.sysconf("SC_CLK_TCK")

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

shares = {plain: [], scheduled: []}
for _ in range(windows):
    start = {pid: cpu_seconds(pid) for pid in shares}
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    for pid in shares:
        shares[pid].append((cpu_seconds(pid) - start[pid]) / elapsed * 100)
print(f"{windows} windows of {window:.0f} s, two idle leaders side by side (schedules: backup `0 {hour} * * *`, verify `30 {hour} * * *`)\n")
print("| leader | CPU (% of one core), median | per window |")
print("| --- | --- | --- |")
for name, pid in (("no schedule (reference)", plain), ("backup and verify schedules", scheduled)):
    values = shares[pid]
    print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
PY
