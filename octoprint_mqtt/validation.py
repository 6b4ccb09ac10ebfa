"""Checks of the values the settings dialog (or anyone using OctoPrint's settings API) sends.

The page checks the same rules as the user types (static/js/mqtt.js); these guard the saved
configuration, so a bad value is refused with a log line instead of breaking the connection
at the next start.
"""

from ._core import validate_topic

# Sub-topic templates, their placeholder and a sample value to render them with.
TOPIC_TEMPLATES = {
    "eventTopic": ("{event}", "Startup"),
    "progressTopic": ("{progress}", "printing"),
    "temperatureTopic": ("{temp}", "tool0"),
    "metadataTopic": ("{key}", "name"),
    "lwTopic": (None, None),
}


def _whole_number(value, low, high):
    if isinstance(value, bool):
        return False
    try:
        number = float(str(value).strip())
    except ValueError:
        return False
    return number.is_integer() and low <= number <= high


def _number(value, low):
    if isinstance(value, bool):
        return False
    try:
        return float(str(value).strip()) >= low
    except ValueError:
        return False


def _topic_problem(base, template, placeholder, sample):
    if template is None:
        return None
    rendered = str(template).replace(placeholder, sample) if placeholder else str(template)
    try:
        validate_topic(f"{base or ''}{rendered}")
    except ValueError as exc:
        return str(exc)
    return None


def problems(changes, merged):
    """Problems of the values in `changes` (a partial `plugins.mqtt` tree as sent to
    on_settings_save), judged together with `merged` (the settings currently in force).
    Returns {(key, ...): message}."""
    found = {}
    broker = changes.get("broker") or {}
    publish = changes.get("publish") or {}

    if "port" in broker and not _whole_number(broker["port"], 1, 65535):
        found[("broker", "port")] = "must be a whole number from 1 to 65535"
    if "keepalive" in broker and not _whole_number(broker["keepalive"], 0, 65535):
        found[("broker", "keepalive")] = "must be a whole number of seconds from 0 to 65535"
    url = broker.get("url")
    if isinstance(url, str) and ("://" in url or any(c.isspace() for c in url.strip())):
        found[("broker", "url")] = "enter only the host name or IP address (no scheme, no spaces)"
    if "offlineQueueSize" in publish and not _whole_number(
        publish["offlineQueueSize"], 0, 10_000_000
    ):
        found[("publish", "offlineQueueSize")] = "must be a whole number from 0 to 10000000"
    if "temperatureThreshold" in publish and not _number(publish["temperatureThreshold"], 0):
        found[("publish", "temperatureThreshold")] = "must be a number of degrees, 0 or more"

    current = merged.get("publish") or {}
    base = publish.get("baseTopic", current.get("baseTopic"))
    for key, (placeholder, sample) in TOPIC_TEMPLATES.items():
        # A new base topic is judged with every template; a new template with its base.
        if key not in publish and "baseTopic" not in publish:
            continue
        problem = _topic_problem(base, publish.get(key, current.get(key)), placeholder, sample)
        if problem:
            culprit = key if key in publish else "baseTopic"
            found.setdefault(("publish", culprit), problem)
    return found


def drop(changes, paths):
    """Removes `paths` from the nested dict `changes` (in place)."""
    for path in paths:
        node = changes
        for key in path[:-1]:
            node = node.get(key) or {}
        node.pop(path[-1], None)


# Numbers arrive from the dialog's text fields as strings; stored as numbers, config.yaml stays
# what a person (or another plugin reading it) expects.
NUMBERS = {
    ("broker", "port"): int,
    ("broker", "keepalive"): int,
    ("publish", "offlineQueueSize"): int,
    ("publish", "temperatureThreshold"): float,
}


def normalise(changes):
    """Turns the numeric settings present in `changes` into numbers (in place). Run after
    `drop`, on values `problems` accepted."""
    for (section, key), kind in NUMBERS.items():
        node = changes.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str):
            node[key] = kind(float(node[key].strip())) if kind is int else kind(node[key])
