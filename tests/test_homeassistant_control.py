"""Remote control's buttons with the real thing: a Home Assistant core (its own virtualenv)
and a real OctoPrint with the virtual printer, discovery and remote control on.

Each allowed job command is a button on the printer's device; pressing Pause and Resume in
Home Assistant pauses and resumes OctoPrint's print; disallowing a command removes its button.
"""

from __future__ import annotations

import pytest
from support.control import control_settings
from support.e2ekit import broker_settings, heating_print_gcode, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.homeassistant]


def buttons(ha, node: str) -> dict[str, str]:
    """Our button entities in Home Assistant's registry: command -> entity id."""
    prefix = f"{node}_"
    return {
        e["unique_id"][len(prefix) :]: e["entity_id"]
        for e in ha.entity_registry()
        if e.get("platform") == "mqtt"
        and e["entity_id"].startswith("button.")
        and str(e.get("unique_id", "")).startswith(prefix)
    }


def press(ha, entity_id: str) -> None:
    ha.ws("call_service", domain="button", service="press", target={"entity_id": entity_id})


def job_state(octoprint) -> str:
    return octoprint.job_state()["state"]


@pytest.mark.timeout(300)
def test_buttons_pause_and_resume_a_print_and_go_when_disallowed(
    broker, octoprint_factory, homeassistant_factory
):
    octoprint = octoprint_factory(
        broker_settings(
            broker,
            homeassistant={"discovery": True},
            control=control_settings("pause", "resume", "cancel"),
        )
    )
    node = octoprint.get("/api/plugin/mqtt")["homeassistant"]["node_id"]
    ha = homeassistant_factory(broker)
    ha.start()
    found = wait_until(
        lambda: (b := buttons(ha, node)) and set(b) == {"pause", "resume", "cancel"} and b,
        30,
        lambda: f"buttons {sorted(buttons(ha, node))}",
    )
    names = {s["entity_id"]: s["attributes"].get("friendly_name") for s in ha.states()}
    assert names[found["pause"]].endswith("Pause print"), names[found["pause"]]

    def button_states():
        current = {s["entity_id"]: s["state"] for s in ha.states()}
        return {command: current.get(entity) for command, entity in found.items()}

    # Home Assistant ignores a press of an unavailable button: wait for the status topic.
    wait_until(
        lambda: "unavailable" not in button_states().values(),
        15,
        lambda: f"buttons available: {button_states()}",
    )

    octoprint.connect_printer()
    octoprint.upload("buttons.gcode", heating_print_gcode(moves=600, dwell_ms=100))
    wait_until(lambda: job_state(octoprint) == "Printing", 30, lambda: job_state(octoprint))

    press(ha, found["pause"])
    wait_until(lambda: job_state(octoprint) == "Paused", 15, lambda: job_state(octoprint))
    press(ha, found["resume"])
    wait_until(lambda: job_state(octoprint) == "Printing", 15, lambda: job_state(octoprint))
    log = octoprint.log_text()
    assert "Remote control: pause done" in log and "Remote control: resume done" in log

    # Pause no longer allowed: its button goes, the others stay.
    octoprint.save_settings({"plugins": {"mqtt": {"control": {"commands": {"pause": False}}}}})
    wait_until(
        lambda: set(buttons(ha, node)) == {"resume", "cancel"},
        20,
        lambda: f"buttons {sorted(buttons(ha, node))}",
    )
    press(ha, found["cancel"])
    wait_until(
        lambda: job_state(octoprint) in ("Operational", "Cancelling"),
        30,
        lambda: job_state(octoprint),
    )
