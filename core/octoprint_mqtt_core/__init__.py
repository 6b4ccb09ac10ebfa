"""The native core of the OctoPrint MQTT plugin. Only the plugin (``octoprint_mqtt``) uses it;
its interface is ``_core`` (see ``_core.pyi``) and changes with every version, which is why
the plugin pins this distribution exactly."""

from ._core import __version__

__all__ = ["__version__"]
