#!/usr/bin/env bash
# The benchmark (docs/benchmark.md): installs what it needs (apt mosquitto and nats-server,
# a virtualenv bench/.venv with OctoPrint and paho-mqtt 1.6.1), builds the plugin in release
# mode into it and the Rust ceiling clients, then runs bench/run.py. Arguments go to run.py,
# e.g. --quick.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Its own virtualenv: the baseline needs paho-mqtt 1.6, the test suite paho 2.
VENV="${BENCH_VENV:-$ROOT/bench/.venv}" REQUIREMENTS="$ROOT/bench/requirements.txt"
source "$ROOT/scripts/env.sh"
cd "$ROOT"

# Figure 9's cluster.
apt_install nats-server
install_plugin
log "building the ceiling clients (cargo build --release; about 1½ minutes from a cold target/ on 2 cores, seconds after)"
cargo build --quiet --release --manifest-path bench/ceiling/Cargo.toml
log "running the benchmark (about 4 minutes; --quick: under a minute and a half; docs/benchmark.md)"
"$VENV/bin/python" bench/run.py "$@"
