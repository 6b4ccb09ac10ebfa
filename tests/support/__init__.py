"""The test suite's helpers: real Mosquitto brokers and subscribers (mqtt_env), real OctoPrint
servers (octoprint_env), the native core driven directly (corekit), TLS certificates
(tls_certs), the plugin's distributions and fresh virtualenvs (install_env), headless Chromium
(browser_env), and the check that the plugin under test is the installed one (installed).

Imported as ``support.<module>``: setup.cfg's ``pythonpath = tests`` puts tests/ (never the
checkout's root, whose octoprint_mqtt/ would shadow the installed plugin) on sys.path.
"""
