"""Which processes use the cores during a benchmark: the server's process tree, `pqscep bench`
and its worker processes, and everything else, read from /proc over a window.

    python benchmarks/cpu_by_process.py --server-pid PID [--delay 2] [--window 6] [--json]

Waits `--delay` seconds and then until the server is busy (so that the bench has made its
devices and its clock runs: `wait_until_busy`), then reads every process's user+system CPU
time and the machine's /proc/stat at the start and the end of `--window` seconds. Prints the
cores each group used on average; divided by the enrollments/s the bench reports for the same
run, that is the CPU each group spends per enrollment (benchmarks/pq_split.sh does the
division). Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import time

TICKS = os.sysconf("SC_CLK_TCK")
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def processes() -> dict[int, tuple[int, str, float]]:
    """{pid: (parent pid, command line, CPU seconds)} of every process readable now."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended between listdir and open
            continue
        found[int(name)] = (int(fields[1]), command, (int(fields[11]) + int(fields[12])) / TICKS)
    return found


def machine() -> list[float]:
    with open("/proc/stat") as f:
        return [int(v) / TICKS for v in f.readline().split()[1:1 + len(STAT_FIELDS)]]


def tree(snapshot: dict[int, tuple[int, str, float]], roots: set[int]) -> set[int]:
    members, grown = set(roots), True
    while grown:
        grown = False
        for pid, (parent, _, _) in snapshot.items():
            if parent in members and pid not in members:
                members.add(pid)
                grown = True
    return members


def wait_until_busy(server_pid: int, cores: float = 0.3, step: float = 0.5, timeout: float = 300.0) -> None:
    """Return once the server's process tree has used `cores` over a `step`: the bench's clock
    runs. Its devices are made first, while the server idles; a window that began during that
    phase would count their keys and signatures as enrollment work (with 8,000 ML-DSA devices
    it lasts ~9 s on two cores)."""
    deadline = time.monotonic() + timeout
    members = tree(processes(), {server_pid})
    while time.monotonic() < deadline:
        before = processes()
        time.sleep(step)
        after = processes()
        members |= tree(after, {server_pid})
        used = sum(after[pid][2] - before[pid][2] for pid in members if pid in before and pid in after)
        if used >= cores * step:
            return
    raise SystemExit(f"the server (pid {server_pid}) never got busy within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    time.sleep(args.delay)
    wait_until_busy(args.server_pid)
    before, machine_before, started = processes(), machine(), time.perf_counter()
    time.sleep(args.window)
    after, machine_after, elapsed = processes(), machine(), time.perf_counter() - started
    server = tree(after, {args.server_pid})
    bench = tree(after, {pid for pid, (_, command, _) in after.items() if "pqscep bench" in command})
    groups = {"server": 0.0, "bench parent": 0.0, "bench workers": 0.0, "other": 0.0}
    for pid, (_, command, cpu) in after.items():
        if pid not in before or pid == os.getpid():
            continue
        used = cpu - before[pid][2]
        if pid in server:
            groups["server"] += used
        elif pid in bench:
            groups["bench parent" if "pqscep bench" in command else "bench workers"] += used
        else:
            groups["other"] += used
    result = {
        "window_s": round(elapsed, 2),
        "cores": {name: round(used / elapsed, 3) for name, used in groups.items()},
        "machine_cores": {name: round((b - a) / elapsed, 3)
                          for name, a, b in zip(STAT_FIELDS, machine_before, machine_after, strict=True)},
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, cores in result["cores"].items():
            print(f"{name:14} {cores:6.3f} cores")
        print("machine:", ", ".join(f"{k} {v}" for k, v in result["machine_cores"].items()))


if __name__ == "__main__":
    main()
