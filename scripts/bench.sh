#!/usr/bin/env bash
# The benchmark (docs/benchmark.md): installs what it needs (apt mosquitto and nats-server,
# a virtualenv bench/.venv with OctoPrint and paho-mqtt 1.6.1), builds the plugin in release
# mode into it and the Rust ceiling clients, then runs bench/run.py. Arguments go to run.py,
# e.g. --quick, --long for figures 10 and 11 (a whole print, three OctoPrints in turn), or
# --profile for where a QoS 1 message's CPU goes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Its own virtualenv: the baseline needs paho-mqtt 1.6, the test suite paho 2.
VENV="${BENCH_VENV:-$ROOT/bench/.venv}" REQUIREMENTS="$ROOT/bench/requirements.txt"
source "$ROOT/scripts/env.sh"
cd "$ROOT"

# Figure 9's cluster.
apt_install nats-server
# --profile samples and traces with perf.
case " $* " in *" --profile "*) apt_install linux-perf ;; esac
install_plugin

# Figure 8's baseline: the classic plugin itself (../shared/thirdparty/, 0.8.16, paho-mqtt<2) in
# an OctoPrint virtualenv of its own (it has this plugin's distribution name).
BENCH_CLASSIC_VENV="$ROOT/bench/.venv-classic"
classic_archive="$ROOT/../shared/thirdparty/OctoPrint-MQTT-2024-06-19-7c15ca5e34.zip"
classic_stamp="$BENCH_CLASSIC_VENV/.installed"
if [ ! -f "$classic_stamp" ] || [ "$classic_archive" -nt "$classic_stamp" ] \
    || [ "$REQUIREMENTS" -nt "$classic_stamp" ]; then
    log "installing OctoPrint and the classic MQTT plugin into $BENCH_CLASSIC_VENV (pip; about 2 minutes the first time)"
    [ -x "$BENCH_CLASSIC_VENV/bin/python" ] || "$PYTHON" -m venv "$BENCH_CLASSIC_VENV"
    "$BENCH_CLASSIC_VENV/bin/pip" install -q --upgrade pip
    # The same OctoPrint as the benchmark's own virtualenv.
    "$BENCH_CLASSIC_VENV/bin/pip" install -q "$(grep -i '^octoprint' "$REQUIREMENTS")"
    # Its setup.py imports OctoPrint's setuptools helpers: only this environment has them.
    "$BENCH_CLASSIC_VENV/bin/pip" install -q --no-build-isolation "$classic_archive"
    touch "$classic_stamp"
fi
export BENCH_CLASSIC_VENV
log "building the ceiling clients (cargo build --release; about 1½ minutes from a cold target/ on 2 cores, seconds after)"
cargo build --quiet --release --manifest-path bench/ceiling/Cargo.toml
log "running the benchmark (about 4 minutes; --quick: under a minute and a half; --long adds figures 10 and 11, a whole print: about 40 minutes more, --quick 4; docs/benchmark.md)"
"$VENV/bin/python" bench/run.py "$@"
