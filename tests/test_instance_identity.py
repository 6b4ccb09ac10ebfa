"""One identity per OctoPrint: a stable instance id kept beside a fingerprint of where it was
made (identity.py), the client id made from it, and `<base>mqtt/instance`, through which two
OctoPrints publishing under one base topic learn of each other (a real Mosquitto)."""

from __future__ import annotations

import json
import logging
import shutil
import time

import pytest
from support.corekit import settings_for, unique_base, wait_state, wait_until
from support.mqtt_env import read_retained

from octoprint_mqtt import identity

LOG = logging.getLogger("test")


def test_the_instance_id_is_kept_and_not_cloned_by_a_copy(tmp_path, caplog):
    base, data = tmp_path / "octoprint", tmp_path / "octoprint" / "data" / "mqtt"
    data.mkdir(parents=True)
    first = identity.instance_id(str(data), str(base), LOG)
    assert identity.INSTANCE_ID.fullmatch(first)
    assert identity.instance_id(str(data), str(base), LOG) == first
    # The whole base folder copied for a second printer (or a second instance here).
    copy = tmp_path / "octoprint2"
    shutil.copytree(base, copy)
    with caplog.at_level(logging.INFO):
        other = identity.instance_id(str(copy / "data" / "mqtt"), str(copy), LOG)
    assert other != first
    assert "copied from another machine" in caplog.text
    assert identity.instance_id(str(copy / "data" / "mqtt"), str(copy), LOG) == other
    # Not in a form it can use: a new one.
    (data / identity.IDENTITY_FILE).write_text("[1]")
    assert identity.instance_id(str(data), str(base), LOG) != first


@pytest.mark.timeout(30)
def test_two_octoprints_under_one_base_topic_are_told_of_each_other(core_factory, broker, caplog):
    base = unique_base()
    a = core_factory()
    a.identify("aaaaaaaaaaaa", "printer-a", "1.0.0")
    assert a.default_client_id == "octoprint-mqtt-aaaaaaaaaaaa"
    a.configure(settings_for(broker, base))
    wait_state(a, "connected")
    topic = f"{base}mqtt/instance"
    card = json.loads(read_retained(broker.host, broker.port, topic)[topic].payload)
    assert card["id"] == "aaaaaaaaaaaa" and card["host"] == "printer-a"
    assert set(card) == {"id", "host", "version", "since"}
    assert a.status()["other_instances"] == []

    b = core_factory()
    b.identify("bbbbbbbbbbbb", "printer-b", "1.0.0")
    b.configure(settings_for(broker, base))
    wait_state(b, "connected")
    # Each names the other, the one that came later too (the first announces itself again).
    for core, other in ((a, "printer-b"), (b, "printer-a")):
        found = wait_until(
            lambda core=core: core.status()["other_instances"], what=f"{other} reported"
        )
        assert [o["host"] for o in found] == [other]
    # Told once each: a's second announcement does not start a loop.
    time.sleep(1.0)
    assert len(a.status()["other_instances"]) == len(b.status()["other_instances"]) == 1
    assert caplog.text.count("Another OctoPrint publishes under the same base topic") == 2

    # Another base topic: nobody else.
    c = core_factory()
    c.identify("cccccccccccc", "printer-c", "1.0.0")
    c.configure(settings_for(broker, unique_base()))
    wait_state(c, "connected")
    assert c.status()["other_instances"] == []
