"""One measurement of one Python path, in a process of its own (so its CPU time and memory
are its own). Started by run.py; prints one JSON object on its last line of output.

    worker.py IMPL MODE --host H --port P [--qos Q] [--n N] [...]

IMPL is `baseline` or `ours` (see clients.py). MODE:
  burst    N events as fast as the caller can make them: each call timed, then until the
           publisher saw all N written (QoS 0) or acknowledged (QoS 1); CPU and memory
  latency  N events paced --interval-us apart; writes "seq send_ns" lines to --times
  memory   N events in batches, waiting for each batch to be written; RSS after each batch
  inbound  counts the messages reaching a subscription callback; prints "ready" when
           subscribed, then waits for --n messages or --quiet-s of silence
  offline  the broker is down: times mqtt_publish(..., allow_queueing=True), then on_event
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from array import array

from clients import EVENT, IMPLEMENTATIONS, event_payload, wait_for

now_ns = time.monotonic_ns  # CLOCK_MONOTONIC, as bench-sub's timestamps


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                fields[line.split(":")[0]] = int(line.split()[1])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentiles(values, *ps) -> list[int]:
    s = sorted(values)
    if not s:
        return [0 for _ in ps]
    return [s[min(len(s) - 1, max(0, -(-len(s) * p // 100) - 1))] for p in ps]


def trimmed_mean(values) -> float:
    """The mean of the fastest 98%: without the calls a preempted thread stretched."""
    s = sorted(values)[: max(1, len(values) * 98 // 100)]
    return sum(s) / len(s)


def sender(client, qos: int):
    """The call a publishing run makes: `on_event` at QoS 0 (the plugin's own events are QoS 0),
    `mqtt_publish` of the same event with its `_event` and `_timestamp` at QoS 1."""
    if qos == 0:
        return lambda seq: client.on_event(EVENT, event_payload(seq))
    topic = f"{client.base}event/{EVENT}"

    def publish(seq):
        payload = event_payload(seq)
        payload["_event"] = EVENT
        payload["_timestamp"] = int(time.time())
        return client.mqtt_publish(topic, payload, qos=qos)

    return publish


def wait_delivered(client, n: int, timeout: float, quiet: float = 3.0) -> None:
    """Until the client saw `n` messages written or acknowledged, or none for `quiet` seconds
    (paho 1.6 loses QoS 1 messages beyond 65,535 in flight: they never complete)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        done = client.delivered()
        if done >= n:
            return
        if done != last:
            last, since = done, time.monotonic()
        elif time.monotonic() - since > quiet:
            return
        time.sleep(0.002)


def burst(client, a) -> dict:
    # The payload dict is built outside the timed region: in OctoPrint the caller builds it.
    qos, n = a.qos, a.n
    topic = f"{client.base}event/{EVENT}"
    make = event_payload
    times = array("q", bytes(8 * n))
    time.sleep(0.05)  # see spec: a send right after the subscriber subscribed skews p99
    rss0, _ = rss_kib()
    cpu0 = cpu_seconds()
    t0 = now_ns()
    if qos == 0:
        on_event = client.on_event
        for i in range(n):
            payload = make(i)
            t = now_ns()
            on_event(EVENT, payload)
            times[i] = now_ns() - t
    else:
        publish = client.mqtt_publish
        for i in range(n):
            payload = make(i)
            payload["_event"] = EVENT
            payload["_timestamp"] = 1795593310
            t = now_ns()
            publish(topic, payload, qos=qos)
            times[i] = now_ns() - t
    t_sent = now_ns()
    wait_delivered(client, n, a.timeout)
    t_done = now_ns()
    cpu = cpu_seconds() - cpu0
    rss, hwm = rss_kib()
    p50, p99 = percentiles(times, 50, 99)
    return {
        "n": n,
        "delivered": client.delivered(),
        "p50_ns": p50,
        "p99_ns": p99,
        "max_ns": max(times),
        "t0_ns": t0,
        "t_sent_ns": t_sent,
        "t_done_ns": t_done,
        "cpu_s": cpu,
        "rss_start_kib": rss0,
        "rss_kib": rss,
        "hwm_kib": hwm,
        "status": client.core.status() if hasattr(client, "core") else None,
    }


def latency(client, a) -> dict:
    send = sender(client, a.qos)
    sent = []
    costs = array("q")
    time.sleep(0.05)
    start = now_ns() + 1_000_000
    for i in range(a.n):
        target = start + i * a.interval_us * 1000
        delay = target - now_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        t = now_ns()
        send(i)
        costs.append(now_ns() - t)
        sent.append((i, t))
    wait_delivered(client, a.n, a.timeout)
    with open(a.times, "w") as f:
        f.writelines(f"{i} {t}\n" for i, t in sent)
    p50, p99 = percentiles(costs, 50, 99)
    return {"n": a.n, "delivered": client.delivered(), "p50_ns": p50, "p99_ns": p99}


def memory(client, a, rss_before_client: int) -> dict:
    """Events in chunks of --chunk, each written before the next (a steady load, not a burst
    held in memory), RSS after every --batch events."""
    rss_connected, _ = rss_kib()
    on_event, make = client.on_event, event_payload
    checkpoints = []
    cpu0 = cpu_seconds()
    t0 = now_ns()
    for start in range(0, a.n, a.chunk):
        end = min(a.n, start + a.chunk)
        for i in range(start, end):
            on_event(EVENT, make(i))
        wait_for(lambda e=end: client.delivered() >= e, a.timeout, f"{end} messages written")
        if end % a.batch == 0 or end == a.n:
            checkpoints.append((end, rss_kib()[0]))
    elapsed = (now_ns() - t0) / 1e9
    return {
        "n": a.n,
        "delivered": client.delivered(),
        "seconds": elapsed,
        "cpu_s": cpu_seconds() - cpu0,
        "rss_before_client_kib": rss_before_client,
        "rss_connected_kib": rss_connected,
        "checkpoints": checkpoints,
        "hwm_kib": rss_kib()[1],
    }


def inbound(client, a) -> dict:
    state = {"count": 0, "first": 0, "last": 0}

    def on_message(topic, payload, *args, **kwargs):
        t = now_ns()
        if state["count"] == 0:
            state["first"] = t
        state["count"] += 1
        state["last"] = t

    client.subscribe(f"{client.base}in/#", on_message, a.qos)
    time.sleep(0.5)  # the SUBSCRIBE is sent by the client's own thread; let the broker take it
    print("ready", flush=True)
    deadline = time.monotonic() + a.timeout
    seen, quiet_since = -1, time.monotonic()
    while state["count"] < a.n and time.monotonic() < deadline:
        if state["count"] != seen:
            seen, quiet_since = state["count"], time.monotonic()
        elif seen > 0 and time.monotonic() - quiet_since > a.quiet_s:
            break
        time.sleep(0.01)
    span = (state["last"] - state["first"]) / 1e9
    out = {"count": state["count"], "first_ns": state["first"], "last_ns": state["last"]}
    out["per_s"] = state["count"] / span if span > 0 else 0.0
    if hasattr(client, "core"):
        out["dispatch_dropped"] = client.core.status()["dispatch_dropped"]
    return out


def offline(client, a) -> dict:
    """Caller-side cost while the broker is down, in windows of --window calls, so a cost that
    grows with the queue shows."""
    topic = f"{client.base}helper/{EVENT}"
    result = {}
    for name in ("mqtt_publish", "on_event"):
        times = array("q")
        for i in range(a.n):
            payload = event_payload(i)
            t = now_ns()
            if name == "mqtt_publish":
                client.mqtt_publish(topic, payload, qos=0, allow_queueing=True)
            else:
                client.on_event(EVENT, payload)
            times.append(now_ns() - t)
        windows = [
            [*percentiles(w, 50, 99), trimmed_mean(w)]
            for w in (times[s : s + a.window] for s in range(0, len(times), a.window))
        ]
        p50, p99 = percentiles(times, 50, 99)
        result[name] = {"p50_ns": p50, "p99_ns": p99, "windows": windows}
    if hasattr(client, "core"):
        result["status"] = client.core.status()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("impl", choices=sorted(IMPLEMENTATIONS))
    ap.add_argument("mode", choices=["burst", "latency", "memory", "inbound", "offline"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--base", default="bench/")
    ap.add_argument("--qos", type=int, default=0)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--interval-us", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=1_000)
    ap.add_argument("--window", type=int, default=2000)
    ap.add_argument("--times", default="send_times.txt")
    ap.add_argument("--quiet-s", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    impl = IMPLEMENTATIONS[a.impl]
    if a.impl == "ours":
        import octoprint_mqtt.plugin  # noqa: F401  (imports counted before the client)
    else:
        import paho.mqtt.client  # noqa: F401
    rss_before_client, _ = rss_kib()
    client = impl(a.host, a.port, a.base, connect=a.mode != "offline")
    # The objects made so far (OctoPrint's modules for ours, few for the baseline) are never
    # garbage: keep the collector from walking them again and again during the loops.
    gc.freeze()
    try:
        if a.mode == "burst":
            out = burst(client, a)
        elif a.mode == "latency":
            out = latency(client, a)
        elif a.mode == "memory":
            out = memory(client, a, rss_before_client)
        elif a.mode == "inbound":
            out = inbound(client, a)
        else:
            out = offline(client, a)
    finally:
        client.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
