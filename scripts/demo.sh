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
first message shows about 2 to 3 minutes after the start on a fresh clone (2 cores), seconds
when everything is built. It stops by itself once the print is done and its 100 % progress
message was shown; Ctrl-C stops it at any time. Either way OctoPrint stops first, so that
the plugin's 'disconnected' on octoprint/mqtt is shown, then the traffic view and Mosquitto.

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

source "$(dirname "$0")/env.sh"
# The demo needs a working plugin, not the fastest one: unoptimised, without link-time
# optimisation and with parallel code generation, a cold build costs a third of the CPU time
# of an optimised one (2 CPU-minutes instead of 6 without LTO, more with it; measured
# 2026-12-03) and the first message shows in about 4 minutes instead of 8. Cargo takes
# these overrides of Cargo.toml's [profile.release] from the environment, so the build is
# still install_plugin's; scripts/test.sh and bench.sh set none, so the tests and the
# benchmark always get (and rebuild) the full release build.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=off
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
BUILD_DURATION="unoptimised for the demo: about 3 minutes from a cold target/ on 2 cores busy with other builds, 2 CPU-minutes; seconds after" \
    install_plugin
exec "$VENV/bin/python" "$ROOT/scripts/demo.py" "$@"
