#!/usr/bin/env python3
"""Where a command's wall time goes: running, waiting for a core, or idle, thread by thread.

    bench/thread-timeline.py [--interval MS] [--buckets N] -- COMMAND ARGS...

Runs COMMAND and samples /proc/PID/task/*/schedstat of it and its child processes every
20 ms. For each thread
the kernel counts the time it ran on a core and the time it was runnable but waited for one
(another process had the core); the rest of its life it slept (blocked on a lock, on I/O, or
had no work). On a shared machine this tells "keyscope does not keep both cores busy" (threads
asleep, or only one thread alive) apart from "other work took the cores" (threads waiting).

Prints a timeline in N buckets (cores' worth of running, of waiting, live threads) and the
totals. Threads that end between two samples lose at most one interval of their counts.
"""
import argparse
import os
import subprocess
import sys
import time


def descendants(pid):
    """pid and every process below it (a peer's `git log -p` child counts as its work)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def sample(pid):
    """{tid: (name, run_ns, wait_ns)} for every live thread of pid and its descendants."""
    out = {}
    for proc in descendants(pid):
        try:
            tids = os.listdir(f"/proc/{proc}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{proc}/task/{tid}/schedstat") as f:
                    run, wait, _ = f.read().split()
                with open(f"/proc/{proc}/task/{tid}/comm") as f:
                    name = f.read().strip()
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            out[int(tid)] = (name, int(run), int(wait))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=20.0, help="milliseconds between samples")
    ap.add_argument("--buckets", type=int, default=20)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    samples = []  # (t, {tid: (name, run, wait)})
    while proc.poll() is None:
        samples.append((time.monotonic() - start, sample(proc.pid)))
        time.sleep(args.interval / 1000)
    wall = time.monotonic() - start
    # Per-interval deltas, summed over threads.
    last = {}
    rows = []  # (t0, t1, run_s, wait_s, live)
    prev_t = 0.0
    for t, snap in samples:
        run = wait = 0
        for tid, (_, r, w) in snap.items():
            r0, w0 = last.get(tid, (0, 0))
            run += r - r0
            wait += w - w0
            last[tid] = (r, w)
        rows.append((prev_t, t, run / 1e9, wait / 1e9, len(snap)))
        prev_t = t
    names = {}
    for _, snap in samples:
        for tid, (name, _, _) in snap.items():
            names[tid] = name
    total_run = sum(r[2] for r in rows)
    total_wait = sum(r[3] for r in rows)
    print(f"command: {' '.join(cmd)}")
    print(f"exit {proc.returncode}, wall {wall:.3f} s, {len(samples)} samples, "
          f"{len(names)} threads ({', '.join(sorted(set(names.values())))})")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"ran {total_run:.3f} core-s, waited for a core {total_wait:.3f} thread-s; "
          f"mean cores running {total_run / wall:.2f}, mean threads waiting {total_wait / wall:.2f}")
    print()
    print(f"{'from':>7} {'to':>7}  {'cores running':>13}  {'threads waiting':>15}  {'live threads':>12}")
    n = args.buckets
    for b in range(n):
        lo, hi = wall * b / n, wall * (b + 1) / n
        sel = [r for r in rows if lo <= r[1] < hi or (b == n - 1 and r[1] >= hi)]
        span = hi - lo
        run = sum(r[2] for r in sel) / span
        wait = sum(r[3] for r in sel) / span
        live = max((r[4] for r in sel), default=0)
        bar = "#" * round(run * 10) + "." * round(wait * 10)
        print(f"{lo:7.3f} {hi:7.3f}  {run:13.2f}  {wait:15.2f}  {live:12d}  {bar}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
