#!/usr/bin/env bash
# The main job end to end on a fresh machine: installs what is missing, builds and installs
# the plugin, starts a local Mosquitto and OctoPrint with the virtual printer and the plugin,
# prints a sample job and shows the MQTT traffic live. `--keep` leaves OctoPrint running.
set -euo pipefail
source "$(dirname "$0")/env.sh"
install_plugin
exec "$VENV/bin/python" "$ROOT/scripts/demo.py" "$@"
