"""Mappings that are not dicts. OctoPrint hands out frozendicts (temperature samples, printer
data); before Python 3.11 their C implementation is no dict subclass, only a Mapping. This
stand-in behaves the same on every Python.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from support.corekit import connected_core, event_json

from octoprint_mqtt_core._core import encode_event, encode_json


class FrozenMapping(Mapping):
    def __init__(self, *args, **kwargs) -> None:
        self._data = dict(*args, **kwargs)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"


def test_mappings_are_json_objects_at_any_depth():
    state = FrozenMapping(text="Operational", flags=FrozenMapping(ready=True))
    body = json.loads(encode_event("PrinterStateChanged", FrozenMapping(state=state), "_ts", 5))
    assert body == {
        "state": {"text": "Operational", "flags": {"ready": True}},
        "_event": "PrinterStateChanged",
        "_ts": 5,
    }
    assert json.loads(encode_json([FrozenMapping(a=1)])) == [{"a": 1}]


def test_temperature_samples_as_mappings_are_published(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    sample = FrozenMapping(
        time=1700000000.5,
        bed=FrozenMapping(actual=40.5, target=60.0),
        tool0=FrozenMapping(actual=25.0, target=0.0),
    )
    assert core.publish_temperatures(sample) == 2
    bed = event_json(sub.wait_for(f"{base}temperature/bed"))
    assert bed == {"actual": 40.5, "target": 60.0, "_timestamp": 1700000000}
    sub.wait_for(f"{base}temperature/tool0")
