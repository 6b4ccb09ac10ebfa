"""The benchmark: the classic Python path (baseline), this plugin's entry points into the
Rust core (ours) and the fastest plain client (ceiling), one after the other against one
Mosquitto on loopback, then one table. Run it through scripts/bench.sh, which builds and
installs what it needs.

    python bench/run.py [--quick] [--only FIGURES] [--long] [--print-s S] [--profile] [--out DIR]

Figures 10 and 11 (a whole print, broker up and down) take long: only --long or --only
10,11 runs them. --profile adds where a QoS 1 message's CPU goes (perf; bench/cpu_profile.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the suite's real-broker and real-OctoPrint helpers

import cpu_profile  # noqa: E402
import farm  # noqa: E402
import figures  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
import whole_print  # noqa: E402
from support.mqtt_env import Broker, free_port  # noqa: E402

FULL = {"n": 100_000, "reps": 3, "latency_n": 2_000, "memory_n": 1_000_000, "offline_n": 20_000}
QUICK = {"n": 10_000, "reps": 1, "latency_n": 500, "memory_n": 100_000, "offline_n": 20_000}
# Seconds of printing in figures 10 and 11.
PRINT_S, QUICK_PRINT_S = 120, 25
ALL = "123456789"
LONG = ("10", "11")
# A print's run besides the printing: OctoPrint's start, connecting, upload and analysis, stop.
PRINT_OVERHEAD_S = 10

# Mosquitto's defaults drop QoS 1 messages beyond 1,000 queued for a subscriber that is
# momentarily behind, and allow only 20 in flight: the broker would be measured, not clients.
BROKER_CONF = "max_queued_messages 0\nmax_inflight_messages 1000\n"


def inside_octoprint(cwd: Path, broker: Broker, n: int, name: str, venv: Path | None) -> dict:
    """One run of figure 8: a real OctoPrint (of `venv`, else of this interpreter, which has
    this plugin) with its MQTT plugin and the timing plugin loaded."""
    from support.octoprint_env import OctoPrintInstance

    out = cwd / f"octoprint-timing-{name}.json"
    os.environ["MQTT_BENCH_OUT"] = str(out)
    os.environ["MQTT_BENCH_N"] = str(n)
    instance = OctoPrintInstance(
        cwd / f"octoprint-{name}",
        free_port(),
        {"broker": {"url": broker.host, "port": broker.port}, "publish": {"baseTopic": "bench8/"}},
        plugin_files=[HERE / "octoprint_timing.py"],
        venv=venv,
    )
    instance.start(timeout=90)
    try:
        deadline = time.monotonic() + 180
        while not out.exists():
            if time.monotonic() > deadline or not instance.running:
                raise RuntimeError(
                    f"no timing results from OctoPrint:\n{instance.log_text()[-3000:]}"
                )
            time.sleep(0.2)
    finally:
        instance.stop()
    result = json.loads(out.read_text())
    if "error" in result:
        raise RuntimeError(f"figure 8 ({name}): {result['error']}")
    return result


def figure8(cwd: Path, broker: Broker, n: int, reps: int) -> dict:
    """Figure 8, ours against the classic plugin (0.8.16, in its own OctoPrint virtualenv,
    BENCH_CLASSIC_VENV, which scripts/bench.sh makes), interleaved run by run; each call's
    p50 and p99 are the medians over the runs, every run kept under "runs"."""
    classic = procs.classic_venv()
    runs: dict[str, list[dict]] = {"ours": [], "classic": []}
    for rep in range(reps):
        for name, venv in (("ours", None), ("classic", classic)):
            runs[name].append(inside_octoprint(cwd, broker, n, f"{name}-{rep}", venv))
    out: dict = {"runs": runs, "reps": reps}
    for name, results in runs.items():
        out[name] = {}
        for call, values in results[0].items():
            if not isinstance(values, dict):
                continue
            out[name][call] = {
                key: sorted(r[call][key] for r in results if call in r)[len(results) // 2]
                for key in values
            }
    return out


def wanted(only: str) -> set[str]:
    """ "189" is figures 1, 8 and 9; 10 and 11 stand alone or between commas ("8,10,11")."""
    figs: set[str] = set()
    for token in only.split(","):
        figs |= {token} if token in LONG else set(token)
    unknown = figs - set(ALL) - set(LONG)
    if unknown:
        raise SystemExit(f"no figure {', '.join(sorted(unknown))} (figures 1 to 9, 10, 11)")
    return figs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10x fewer events (about a minute)")
    ap.add_argument(
        "--only", default=ALL, help="figures to run, e.g. 124 or 8,10,11 (default: 1 to 9)"
    )
    ap.add_argument("--long", action="store_true", help="add figures 10 and 11 (a whole print)")
    ap.add_argument(
        "--print-s",
        type=int,
        help=f"seconds of printing, figures 10 and 11 (default {PRINT_S}, --quick {QUICK_PRINT_S})",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="add a profile of a QoS 1 burst (perf record and perf trace; about a minute)",
    )
    ap.add_argument("--out", type=Path, help="folder for results (default: bench/runs/<time>)")
    a = ap.parse_args()
    size = QUICK if a.quick else FULL
    figs = wanted(a.only) | (set(LONG) if a.long else set())
    print_s = a.print_s or (QUICK_PRINT_S if a.quick else PRINT_S)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    cwd = (a.out or HERE / "runs" / stamp).resolve()
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def step(title: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {title}", file=sys.stderr, flush=True)

    broker = Broker(BROKER_CONF, workdir=cwd / "broker", quiet=True)
    broker.start()
    port = broker.port
    results: dict = {"size": size}
    try:
        for qos in (0, 1):
            if figs & set("1235"):
                step(
                    f"figures 1, 2, 3, 5: {size['n']:,} events as fast as possible, QoS {qos}, "
                    f"{size['reps']} run(s)"
                )
                results[f"burst_q{qos}"] = figures.burst(cwd, port, qos, size["n"], size["reps"])
            if "4" in figs:
                step(f"figure 4: latency of {size['latency_n']:,} events 1 ms apart, QoS {qos}")
                results[f"latency_q{qos}"] = figures.latency(
                    cwd, port, qos, size["latency_n"], size["reps"]
                )
            if "6" in figs:
                step(f"figure 6: {size['n']:,} messages into a Python callback, QoS {qos}")
                results[f"inbound_q{qos}"] = figures.inbound(cwd, port, qos, size["n"])
        if "5" in figs:
            step(f"figure 5: memory over {size['memory_n']:,} events")
            results["memory"] = figures.memory(
                cwd, port, size["memory_n"], max(1, size["memory_n"] // 10)
            )
        if "7" in figs:
            step(f"figure 7: {size['offline_n']:,} calls each with the broker down")
            results["offline"] = figures.offline(cwd, free_port(), size["offline_n"])
        if "8" in figs:
            step(
                f"figure 8: inside a real OctoPrint, ours and the classic plugin, {size['reps']}"
                " run(s) each, interleaved (about 40 s a run)"
            )
            results["octoprint"] = figure8(cwd, broker, 20_000, size["reps"])
        if "9" in figs:
            step(
                f"figure 9: {farm.INSTANCES} cores on a 3-node NATS cluster, a node killed,"
                f" {size['reps']} run(s) of about 30 s"
            )
            results["farm"] = farm.farm(cwd, size["reps"])
        for fig, key, print_port, what in (
            ("10", "print", broker.port, "the broker up"),
            ("11", "print_down", None, "the broker's port closed"),
        ):
            if fig not in figs:
                continue
            minutes = 3 * size["reps"] * (print_s + PRINT_OVERHEAD_S) / 60
            step(
                f"figure {fig}: a whole print ({print_s} s) with {what}, no MQTT plugin, the"
                f" classic plugin and ours, {size['reps']} run(s) each, interleaved (about"
                f" {minutes:.0f} min)"
            )
            results[key] = whole_print.whole_print(cwd, fig, print_port, print_s, size["reps"])
        if a.profile:
            step(f"profile: {size['n']:,} QoS 1 messages each under perf record, then perf trace")
            results["profile"] = cpu_profile.run(cwd, port, size["n"])
    finally:
        broker.stop()
    results["machine"] = report.machine()
    results["date"] = stamp
    results["seconds"] = time.monotonic() - started
    (cwd / "results.json").write_text(json.dumps(results, indent=1))
    text = (
        f"Benchmark of {stamp} ({results['seconds']:.0f} s{', quick' if a.quick else ''}) on "
        f"{results['machine']}\n"
    )
    if list(report.rows(results)):
        text += f"\n{report.table(results)}\n"
    if "farm" in results:
        text += f"\n{report.farm_table(results['farm'])}\n"
    if "profile" in results:
        text += f"\n{cpu_profile.table(results['profile'], size['n'])}\n"
    (cwd / "table.md").write_text(text)
    print(text)
    print(f"(raw figures in {cwd / 'results.json'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
