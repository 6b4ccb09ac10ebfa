"""This OctoPrint's instance id: the client id while `client.client_id` is unset, and the id
`<base>mqtt/instance` announces (src/instance.rs).

Stable across restarts and upgrades, so that brokers and dashboards see the same client. Kept
in the plugin's data folder, never in config.yaml, so that a copied configuration does not
clone it; and kept together with a fingerprint of the machine and the OctoPrint base folder,
so that a data folder or SD card image copied to another printer (or a second OctoPrint
instance on the same machine made from a copy) makes an id of its own.
"""

import hashlib
import json
import os
import re
import secrets
import uuid

IDENTITY_FILE = "instance.json"
INSTANCE_ID = re.compile(r"[0-9a-f]{12}")
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def fingerprint(base_folder):
    """What changes when the data folder is copied elsewhere: the machine's id, its network
    hardware address and OctoPrint's base folder."""
    parts = [os.path.realpath(base_folder)]
    for path in MACHINE_ID_FILES:
        try:
            with open(path, encoding="ascii") as f:
                parts.append(f.read().strip())
            break
        except (OSError, ValueError):
            continue
    node = uuid.getnode()
    # Python makes up a random address (multicast bit set) when it finds none: not stable.
    if not node & (1 << 40):
        parts.append(f"{node:012x}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def instance_id(data_folder, base_folder, logger):
    """The stored id when it was made here; otherwise a new one, stored."""
    path = os.path.join(data_folder, IDENTITY_FILE)
    here = fingerprint(base_folder)
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
        if (
            isinstance(stored, dict)
            and INSTANCE_ID.fullmatch(str(stored.get("id")))
            and stored.get("machine") == here
        ):
            return stored["id"]
        if isinstance(stored, dict) and stored.get("machine") != here:
            logger.info(
                "The plugin's data folder was copied from another machine or OctoPrint "
                "instance: this one gets an MQTT client id of its own"
            )
        else:
            logger.warning("%s holds no usable instance id: making a new one", path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        logger.warning("Cannot read %s (%s): making a new instance id", path, exc)
    made = secrets.token_hex(6)
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"id": made, "machine": here}, f)
    except OSError as exc:
        logger.warning(
            "Cannot store the instance id in %s (%s): the client id changes at the next start",
            path,
            exc,
        )
    return made
