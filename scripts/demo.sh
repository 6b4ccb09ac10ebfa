#!/usr/bin/env bash
# The main job end to end on a fresh machine: installs what is missing, builds and installs
# the plugin, starts a local Mosquitto and OctoPrint with the virtual printer and the plugin,
# prints a sample job and shows the MQTT traffic live.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash scripts/demo.sh [--keep]

Installs what is missing (apt: mosquitto; a virtualenv .venv with OctoPrint), builds and
installs the plugin, then starts a local Mosquitto and an OctoPrint with its virtual printer
and the plugin, prints a sample job and shows every MQTT message as 'topic payload'. The
first message shows about 2½ minutes after the start in a fresh clone (2 cores; most of it
the build), about half a minute when everything is built. It stops by itself once the print
is done and its 100 % progress message was shown (about 30 s later); Ctrl-C stops it at any
time. Either way OctoPrint stops first, so that the plugin's 'disconnected' on
octoprint/mqtt is shown, then the traffic view, then Mosquitto.

  --keep     keep OctoPrint running after the print, to look around in its UI (the demo
             prints its address, user and password), until Ctrl-C
  -h, --help this text
EOF
}

# Before anything is installed: a wrong option should not cost a build to find out.
for arg in "$@"; do
    case "$arg" in
    --keep) ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The demo needs a working plugin, not the fastest one: unoptimised, without link-time
# optimisation and with parallel code generation, a cold build costs a third of the CPU time
# of an optimised one (2 CPU-minutes instead of 6 without LTO, more with it; measured
# 2026-12-03). Cargo takes these overrides of Cargo.toml's [profile.release] from the
# environment, so the build is still install_plugin's; scripts/test.sh and bench.sh set
# none, so the tests and the benchmark always get (and rebuild) the full release build.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=off
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
# From a cold target/ (a fresh clone), cargo compiles the plugin's dependencies while env.sh
# fills the virtualenv: maturin comes from there, the dependencies do not need it. The two
# overlap, and maturin's build then only compiles pyo3's crates (their build script sees
# maturin's environment, not this one) and the plugin again, about 20 s. Only when cold:
# once built, another run would make maturin compile pyo3 again each time.
prebuild=""
if [ ! -d "${CARGO_TARGET_DIR:-$ROOT/target}/release" ]; then
    # In a process group of its own (setsid, which keeps the PID), so that cargo and its
    # compilers can be stopped together when env.sh fails or Ctrl-C stops this script.
    (cd "$ROOT" && exec setsid cargo build --quiet --release --lib --features extension-module) \
        >/dev/null 2>&1 &
    prebuild=$!
    trap '[ -z "$prebuild" ] || kill -- "-$prebuild" 2>/dev/null || true' EXIT
fi
source "$ROOT/scripts/env.sh"
if [ -n "$prebuild" ]; then
    log "waiting for cargo, which compiles the plugin's dependencies (started first; about 2" \
        "minutes in all on 2 cores)"
    # Its failure shows in maturin's build, with the compiler's message.
    wait "$prebuild" || true
    prebuild=""
fi
BUILD_DURATION="unoptimised for the demo: about 20 s once the dependencies are built, seconds when src/ did not change" \
    install_plugin
exec "$VENV/bin/python" "$ROOT/scripts/demo.py" "$@"
