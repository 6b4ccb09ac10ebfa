"""Figures 1 to 7: each runs baseline, ours and the ceiling against one broker, one after the
other (never at the same time: the machine has two cores), and returns plain numbers."""

from __future__ import annotations

from pathlib import Path

import procs

IMPLS = ("baseline", "ours")


def _sub(cwd: Path, port: int, name: str, qos: int, expect: int, **opts):
    return procs.subscriber(
        cwd, port, name, topic="bench/event/#", qos=qos, expect=expect, quiet_ms=3000, **opts
    )


def _medians(runs: list[dict]) -> dict:
    """Each figure's median over the runs, every run kept under "runs": other processes on
    the machine make single runs vary by 20% or more."""
    out = {"runs": runs, "reps": len(runs)}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)):
            values = sorted(r[key] for r in runs)
            out[key] = values[len(values) // 2]
    return out


def _burst_python(cwd: Path, port: int, impl: str, qos: int, n: int, rep: int) -> dict:
    name = f"burst-{impl}-q{qos}-{rep}"
    sub = _sub(cwd, port, f"{name}-sub", qos, n)
    w = procs.worker(cwd, impl, "burst", port, name, qos=qos, n=n).result(300)
    s = sub.result(120)
    span = (s["last_ns"] - w["t0_ns"]) / 1e9
    return {
        "cost_p50_us": w["p50_ns"] / 1e3,
        "cost_p99_us": w["p99_ns"] / 1e3,
        "received": s["count"],
        "throughput": s["count"] / span if span > 0 else 0.0,
        "cpu_us_per_msg": w["cpu_s"] * 1e6 / n,
        "peak_rss_mib": w["hwm_kib"] / 1024,
        "raw": {"worker": w, "sub": s},
    }


def _burst_ceiling(cwd: Path, port: int, qos: int, n: int, rep: int) -> dict:
    # Caller cost: a blocking rumqttc client (its connection on another thread, as in the
    # plugin's core). Throughput, CPU and memory: the async client on one thread.
    name = f"burst-ceiling-cost-q{qos}-{rep}"
    sub = _sub(cwd, port, f"{name}-sub", qos, n)
    c = procs.ceiling(cwd, "bench-pub", "cost", port, name, qos=qos, n=n).result(300)
    sub.result(120)
    name = f"burst-ceiling-q{qos}-{rep}"
    sub = _sub(cwd, port, f"{name}-sub", qos, n)
    t = procs.ceiling(cwd, "bench-pub", "throughput", port, name, qos=qos, n=n).result(300)
    s = sub.result(120)
    span = (s["last_ns"] - t["t0_ns"]) / 1e9
    return {
        "cost_p50_us": c["p50_ns"] / 1e3,
        "cost_p99_us": c["p99_ns"] / 1e3,
        "received": s["count"],
        "throughput": s["count"] / span if span > 0 else 0.0,
        "cpu_us_per_msg": (t["cpu_user"] + t["cpu_sys"]) * 1e6 / n,
        "peak_rss_mib": t["hwm_kib"] / 1024,
        "raw": {"cost": c, "throughput": t, "sub": s},
    }


def burst(cwd: Path, port: int, qos: int, n: int, reps: int) -> dict:
    """Figures 1, 2, 3 and the peak RSS of 5: N events as fast as the caller makes them,
    `reps` times each, interleaved (baseline, ours, ceiling, baseline, ...)."""
    runs: dict = {impl: [] for impl in (*IMPLS, "ceiling")}
    for rep in range(reps):
        for impl in IMPLS:
            runs[impl].append(_burst_python(cwd, port, impl, qos, n, rep))
        runs["ceiling"].append(_burst_ceiling(cwd, port, qos, n, rep))
    return {impl: _medians(r) for impl, r in runs.items()}


def _latencies(sent_path: Path, recv_path: Path) -> dict:
    sent = dict(map(int, line.split()) for line in sent_path.read_text().splitlines())
    lat = sorted(
        (t - sent[seq]) / 1e3
        for seq, t in (map(int, line.split()) for line in recv_path.read_text().splitlines())
        if seq in sent
    )
    if not lat:
        return {"p50_us": 0.0, "p99_us": 0.0, "received": 0}

    def pct(p):
        return lat[min(len(lat) - 1, max(0, -(-len(lat) * p // 100) - 1))]

    return {"p50_us": pct(50), "p99_us": pct(99), "max_us": lat[-1], "received": len(lat)}


def latency(cwd: Path, port: int, qos: int, n: int, reps: int) -> dict:
    """Figure 4: event to subscriber, N events paced 1 ms apart; medians of `reps` runs."""
    runs: dict = {impl: [] for impl in (*IMPLS, "ceiling")}
    for rep in range(reps):
        for impl, r in _latency_once(cwd, port, qos, n, rep).items():
            runs[impl].append(r)
    return {impl: _medians(r) for impl, r in runs.items()}


def _latency_once(cwd: Path, port: int, qos: int, n: int, rep: int) -> dict:
    out = {}
    for impl in (*IMPLS, "ceiling"):
        name = f"latency-{impl}-q{qos}-{rep}"
        sent, recv = cwd / f"{name}.sent", cwd / f"{name}.recv"
        sub = _sub(cwd, port, f"{name}-sub", qos, n, times=recv)
        if impl == "ceiling":
            p = procs.ceiling(cwd, "bench-pub", "latency", port, name, qos=qos, n=n, times=sent)
        else:
            p = procs.worker(cwd, impl, "latency", port, name, qos=qos, n=n, times=sent)
        p.result(120)
        sub.result(60)
        out[impl] = _latencies(sent, recv)
    return out


def memory(cwd: Path, port: int, n: int, batch: int) -> dict:
    """Figure 5: RSS after each batch of events (QoS 0, on_event), growth after the first
    batch (the warm-up), and the client's own footprint."""
    out = {}
    for impl in IMPLS:
        m = procs.worker(cwd, impl, "memory", port, f"memory-{impl}", n=n, batch=batch).result(600)
        cps = m["checkpoints"]
        out[impl] = {
            "growth_mib": (cps[-1][1] - cps[0][1]) / 1024,
            "footprint_mib": (m["hwm_kib"] - m["rss_before_client_kib"]) / 1024,
            "raw": m,
        }
    t = procs.ceiling(
        cwd, "bench-pub", "throughput", port, "memory-ceiling", n=n, checkpoints=n // batch
    ).result(600)
    cps = t["checkpoints"]
    out["ceiling"] = {
        "growth_mib": (cps[-1][1] - cps[0][1]) / 1024 if cps else 0.0,
        "footprint_mib": t["hwm_kib"] / 1024,
        "raw": t,
    }
    return out


def inbound(cwd: Path, port: int, qos: int, n: int) -> dict:
    """Figure 6: messages a second reaching a Python subscription callback, from the ceiling
    publisher (as fast as the broker takes them)."""
    out = {}
    for impl in (*IMPLS, "ceiling"):
        name = f"inbound-{impl}-q{qos}"
        if impl == "ceiling":
            rx = procs.subscriber(cwd, port, name, topic="bench/in/#", qos=qos, expect=n)
        else:
            rx = procs.worker(cwd, impl, "inbound", port, name, qos=qos, n=n)
            rx.wait_line("ready", 30)
        procs.ceiling(
            cwd, "bench-pub", "throughput", port, f"{name}-pub", qos=qos, n=n, topic="bench/in/x"
        ).result(300)
        r = rx.result(300)
        if impl == "ceiling":
            span = (r["last_ns"] - r["first_ns"]) / 1e9
            r["per_s"] = r["count"] / span if span > 0 else 0.0
        out[impl] = {"per_s": r["per_s"], "received": r["count"], "raw": r}
    return out


def offline(cwd: Path, dead_port: int, n: int) -> dict:
    """Figure 7: the broker is down (nothing listens on the port)."""
    out = {}
    for impl in IMPLS:
        r = procs.worker(
            cwd, impl, "offline", dead_port, f"offline-{impl}", n=n, window=max(1, n // 10)
        ).result(300)
        out[impl] = r
    return out
