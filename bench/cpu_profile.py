"""Where a QoS 1 message's CPU goes (`run.py --profile`): the figure 3 burst of the baseline,
ours and the ceiling once under `perf record` (CPU samples, thread by thread, grouped by what
runs: the kernel, Python, each Rust crate) and once under `perf trace -s` (system calls per
message, thread by thread). Tracing slows each run down, so its CPU is not figure 3's; the
counts are exact."""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import figures
import procs

SAMPLE_HZ = 4000
# Threads and parts under this share of the samples, and syscalls under this many per message,
# are left out (results.json keeps every thread and part): the profile is for what matters.
MIN_SHARE, MIN_PER_MSG = 0.02, 0.02


def _run(cwd: Path, port: int, impl: str, n: int, name: str, wrap: tuple) -> dict:
    sub = figures._sub(cwd, port, f"{name}-sub", 1, n)
    if impl == "ceiling":
        p = procs.ceiling(cwd, "bench-pub", "throughput", port, name, qos=1, n=n, wrap=wrap)
    else:
        p = procs.worker(cwd, impl, "burst", port, name, qos=1, n=n, wrap=wrap)
    w = p.result(600)
    s = sub.result(120)
    cpu = w["cpu_s"] if "cpu_s" in w else w["cpu_user"] + w["cpu_sys"]
    return {"cpu_us_per_msg": cpu * 1e6 / n, "received": s["count"]}


def _what(dso: str, kind: str, sym: str) -> str:
    """What a sample belongs to: the kernel, the interpreter, a Rust crate (by the symbol's
    path), a C library."""
    if kind == "[k]":
        return "kernel"
    if "python" in dso.lower():
        return "Python"
    name = sym.lstrip("<&_").strip()
    if "::" in name:
        return name.split("::")[0]
    if dso.startswith("lib") and ".so" in dso:
        return dso.split(".so")[0]
    return dso


def _thread_name(tid: int, comm: str, first: int, taken: dict) -> str:
    """The main thread, the core's threads by their names (mqtt-core), others numbered."""
    if tid == first:
        return "main"
    name, i = comm, 1
    while name in taken:
        i += 1
        name = f"{comm} {i}"
    return name


def _samples(data: Path) -> dict:
    """{thread: {"share": of all samples, "parts": {what: share of the thread's}, "top":
    [(share, symbol)]}}."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "-q", "--sort", "pid,dso,sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = defaultdict(list)
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\d+):(\S+)\s+(\S+)\s+(\[.\])\s+(.*)$", line)
        if m:
            share, tid, comm, dso, kind, sym = m.groups()
            rows[(int(tid), comm)].append((float(share) / 100, _what(dso, kind, sym), sym))
    first = min((tid for tid, _ in rows), default=0)
    out = {}
    for (tid, comm), syms in rows.items():
        total = sum(s for s, _, _ in syms)
        parts: dict = defaultdict(float)
        for share, what, _ in syms:
            parts[what] += share / total
        out[_thread_name(tid, comm, first, out)] = {
            "share": total,
            "parts": {k: v for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
            "top": [(s / total, sym) for s, _, sym in syms[:8]],
        }
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["share"]))


def _syscalls(summary: Path, n: int) -> dict:
    """{thread: {syscall: calls per message}} from `perf trace -s`."""
    out: dict = {}
    thread = None
    first = None
    for line in summary.read_text().splitlines():
        head = re.match(r"\s*(.+?) \((\d+)\), \d+ events", line)
        if head:
            tid = int(head.group(2))
            first = tid if first is None else min(first, tid)
            thread = (tid, head.group(1))
            out[thread] = {}
            continue
        row = re.match(r"\s+([a-z_0-9]+)\s+(\d+)\s+\d+\s+[\d.]+", line)
        if row and thread:
            out[thread][row.group(1)] = int(row.group(2)) / n
    named = {}
    for (tid, comm), calls in out.items():
        name = _thread_name(tid, comm, first, named)
        kept = {k: v for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v >= MIN_PER_MSG}
        if kept:
            named[name] = kept
    return named


def run(cwd: Path, port: int, n: int) -> dict:
    out = {}
    for impl in ("baseline", "ours", "ceiling"):
        data = cwd / f"profile-{impl}.perf"
        record = ("perf", "record", "-q", "-e", "cpu-clock", "-F", str(SAMPLE_HZ), "-o", str(data))
        sampled = _run(cwd, port, impl, n, f"profile-{impl}", (*record, "--"))
        summary = cwd / f"profile-{impl}.trace"
        traced = _run(
            cwd, port, impl, n, f"trace-{impl}", ("perf", "trace", "-s", "-o", str(summary), "--")
        )
        out[impl] = {
            **sampled,
            "threads": _samples(data),
            "syscalls_per_msg": _syscalls(summary, n),
            "traced_received": traced["received"],
        }
    return out


def table(p: dict, n: int) -> str:
    lines = [
        f"QoS 1, {n:,} messages as fast as the caller makes them (figure 3's burst), once each.",
        "",
        "| who | CPU µs/msg | thread | its share | where its time goes | syscalls per message |",
        "|---|---:|---|---:|---|---|",
    ]
    for impl, r in p.items():
        for i, (thread, t) in enumerate(r["threads"].items()):
            if t["share"] < MIN_SHARE:
                continue
            parts = ", ".join(f"{k} {v:.0%}" for k, v in t["parts"].items() if v >= MIN_SHARE)
            calls = r["syscalls_per_msg"].get(thread, {})
            sc = ", ".join(f"{k} {v:.2f}" for k, v in calls.items())
            who, cpu = (impl, f"{r['cpu_us_per_msg']:.2f}") if i == 0 else ("", "")
            lines.append(f"| {who} | {cpu} | {thread} | {t['share']:.0%} | {parts} | {sc} |")
    return "\n".join(lines)
