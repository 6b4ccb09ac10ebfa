"""Remote control's printer actions (docs/control.md).

The core reads each request, checks its fields, refuses what is not allowed, drops
duplicates and sends the answers (src/control.rs). It calls `Commands` on a thread of its own,
one command at a time, with the fields already in one shape per command. What is left here
needs OctoPrint's printer, files and printer profiles: whether the printer can do it now.
"""

from octoprint.filemanager import valid_file_type

# What OctoPrint's printer methods record as the source of a command.
TAGS = frozenset(("source:plugin", "plugin:mqtt", "trigger:mqtt_control"))


def heaters_of(profile):
    """The heaters of a printer profile, as OctoPrint names them."""
    profile = profile or {}
    extruder = profile.get("extruder") or {}
    count = 1 if extruder.get("sharedNozzle") else int(extruder.get("count") or 1)
    heaters = [f"tool{i}" for i in range(count)]
    if profile.get("heatedBed"):
        heaters.append("bed")
    if profile.get("heatedChamber"):
        heaters.append("chamber")
    return heaters


class Refused(Exception):
    """The printer cannot do it now; the text is the answer's `error`."""


class Commands:
    def __init__(self, printer, file_manager, profiles, logger):
        self._printer = printer
        self._files = file_manager
        self._profiles = profiles
        self._logger = logger

    def __call__(self, command, args):
        """`(True, result)` or `(False, reason)`; never raises (the core would answer
        without the reason)."""
        try:
            return True, getattr(self, "_" + command)(**args)
        except Refused as refused:
            return False, str(refused)
        except Exception:
            self._logger.exception("Remote control: %s failed", command)
            return False, f"{command} failed inside OctoPrint (see octoprint.log)"

    # ~~ checks

    def _state(self):
        return self._printer.get_state_string() or self._printer.get_state_id()

    def _operational(self):
        if not self._printer.is_operational():
            raise Refused(f"the printer is not operational (it is {self._state()})")

    def _idle(self):
        self._operational()
        if self._printer.is_printing() or self._printer.is_paused():
            raise Refused(f"the printer is busy with a print (it is {self._state()})")

    # ~~ commands

    def _connect(self, port=None, baudrate=None, profile=None):
        if not self._printer.is_closed_or_error():
            raise Refused(f"the printer is already connected (it is {self._state()})")
        options = self._printer.__class__.get_connection_options()
        if port is not None and port not in options["ports"] and port != "AUTO":
            ports = ", ".join(options["ports"]) or "none"
            raise Refused(f"no serial port {port!r} (OctoPrint sees: {ports})")
        if baudrate is not None and baudrate not in options["baudrates"]:
            raise Refused(f"baudrate {baudrate} is not one OctoPrint offers")
        if profile is not None and not self._profiles.exists(profile):
            raise Refused(f"no printer profile {profile!r}")
        self._printer.connect(port=port, baudrate=baudrate, profile=profile)

    def _disconnect(self):
        if self._printer.get_state_id() in ("OFFLINE", "CLOSED"):
            raise Refused("the printer is not connected")
        self._printer.disconnect()

    def _start(self, path, origin):
        self._idle()
        # Operational but busy (cancelling, streaming to the SD card): OctoPrint would
        # ignore the selection without a word.
        if not self._printer.is_ready():
            raise Refused(f"the printer is busy (it is {self._state()})")
        if origin == "sdcard":
            if not self._printer.is_sd_ready():
                raise Refused("the printer's SD card is not ready")
            names = {f.get("name") for f in self._printer.get_sd_files()}
            if path not in names:
                raise Refused(f"file not found on the printer's SD card: {path}")
            self._printer.select_file(path, True, printAfterSelect=True, tags=TAGS)
            return
        try:
            exists = self._files.file_exists("local", path)
        except ValueError:  # a path outside the upload folder
            exists = False
        if not exists:
            raise Refused(f"file not found: {path}")
        if not valid_file_type(path, type="machinecode"):
            raise Refused(f"not a G-code file: {path}")
        on_disk = self._files.path_on_disk("local", path)
        self._printer.select_file(on_disk, False, printAfterSelect=True, tags=TAGS)

    def _pause(self):
        if not self._printer.is_printing():
            raise Refused(f"the printer is not printing (it is {self._state()})")
        self._printer.pause_print(tags=TAGS)

    def _resume(self):
        if not self._printer.is_paused():
            raise Refused(f"the print is not paused (the printer is {self._state()})")
        self._printer.resume_print(tags=TAGS)

    def _cancel(self):
        if not (self._printer.is_printing() or self._printer.is_paused()):
            raise Refused(f"the printer is not printing (it is {self._state()})")
        self._printer.cancel_print(tags=TAGS)

    def _gcode(self, commands):
        self._operational()
        self._printer.commands(commands, tags=TAGS)

    def _temperature(self, targets):
        self._operational()
        heaters = heaters_of(self._profiles.get_current_or_default())
        unknown = sorted(set(targets) - set(heaters))
        if unknown:
            raise Refused(
                f"this printer has no heater {', '.join(unknown)} (it has {', '.join(heaters)})"
            )
        for heater, value in targets.items():
            self._printer.set_temperature(heater, value, tags=TAGS)

    def _home(self, axes):
        self._idle()
        self._printer.home(axes, tags=TAGS)

    def _jog(self, axes, speed=None):
        self._idle()
        self._printer.jog(axes, relative=True, speed=speed, tags=TAGS)
