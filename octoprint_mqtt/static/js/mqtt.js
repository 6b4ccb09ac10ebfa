/*
 * MQTT settings page and navbar indicator.
 *
 * The status arrives over OctoPrint's socket (plugin messages the server pushes when it
 * changes); it is fetched over the API only when the page loads or the user logs in, so
 * there is no polling. Field checks mirror octoprint_mqtt/validation.py, which guards what
 * is saved.
 */
$(function () {
    // Built on first use: gettext exists only once OctoPrint's UI has loaded.
    function states() {
        return {
            starting: {text: gettext("Starting"), css: "mqtt-connecting"},
            idle: {text: gettext("Not configured"), css: "mqtt-idle"},
            connecting: {text: gettext("Connecting"), css: "mqtt-connecting"},
            connected: {text: gettext("Connected"), css: "mqtt-connected"},
            backing_off: {text: gettext("Disconnected"), css: "mqtt-down"},
            stopped: {text: gettext("Stopped"), css: "mqtt-idle"}
        };
    }
    function counters() {
        return [
            ["published", gettext("published")],
            ["queued", gettext("queued")],
            ["dropped", gettext("dropped")],
            ["rejected", gettext("rejected")],
            ["received", gettext("received")],
            ["reconnects", gettext("reconnects")]
        ];
    }

    function text(value) {
        return value === undefined || value === null ? "" : String(value);
    }

    function wholeNumberError(value, low, high) {
        var t = text(value).trim();
        if (!/^\d+$/.test(t) || Number(t) < low || Number(t) > high) {
            return _.sprintf(gettext("a whole number from %(low)s to %(high)s"), {
                low: low,
                high: high
            });
        }
        return "";
    }

    function topicError(base, template, checkEmpty) {
        var full = text(base) + text(template);
        if (/[+#]/.test(text(template))) {
            return gettext("topics cannot contain the wildcards + or #");
        }
        if (full.indexOf("\u0000") >= 0) {
            return gettext("topics cannot contain NUL");
        }
        if (checkEmpty && !full.length) {
            return gettext("the topic would be empty");
        }
        return "";
    }

    function ago(seconds) {
        if (seconds < 60) return gettext("just now");
        if (seconds < 3600) return _.sprintf(gettext("%(n)d min ago"), {n: seconds / 60});
        if (seconds < 86400) return _.sprintf(gettext("%(n)d h ago"), {n: seconds / 3600});
        return _.sprintf(gettext("%(n)d days ago"), {n: seconds / 86400});
    }

    function MqttViewModel(parameters) {
        var self = this;
        var STATES = states();
        var COUNTERS = counters();
        self.loginState = parameters[0];
        self.access = parameters[1];
        self.settingsViewModel = parameters[2];

        self.cfg = ko.observable(null);
        self.status = ko.observable(null);
        self.testing = ko.observable(false);
        self.testResult = ko.observable(null);
        // Ticks the "… ago" texts; no request involved.
        self.now = ko.observable(Date.now());
        setInterval(function () {
            self.now(Date.now());
        }, 15000);

        self.canSee = ko.pureComputed(function () {
            var permission = self.access.permissions.PLUGIN_MQTT_ADMIN;
            return !!permission && self.loginState.hasPermission(permission);
        });

        // ~~ status

        self.state = ko.pureComputed(function () {
            var s = self.status();
            return (s && STATES[s.state]) || {text: gettext("Unknown"), css: "mqtt-idle"};
        });
        self.stateText = ko.pureComputed(function () {
            return self.state().text;
        });
        self.stateCss = ko.pureComputed(function () {
            return self.state().css;
        });
        self.broker = ko.pureComputed(function () {
            var s = self.status();
            return (s && s.broker) || "";
        });
        self.sinceText = ko.pureComputed(function () {
            var s = self.status();
            if (!s || !s.since) return "";
            var when = new Date(s.since * 1000);
            var seconds = Math.max(0, (self.now() - when.getTime()) / 1000);
            return when.toLocaleString() + " (" + ago(seconds) + ")";
        });
        self.lastError = ko.pureComputed(function () {
            var s = self.status();
            return (s && s.last_error) || "";
        });
        self.isDown = ko.pureComputed(function () {
            var s = self.status();
            return !!s && s.state !== "connected";
        });
        self.counters = ko.pureComputed(function () {
            var s = self.status() || {};
            return _.map(COUNTERS, function (c) {
                return {key: c[0], label: c[1], value: s[c[0]] || 0};
            });
        });
        self.tooltip = ko.pureComputed(function () {
            var s = self.status();
            if (!s) return gettext("MQTT: status unknown");
            var line = "MQTT: " + self.stateText();
            if (s.broker) line += " (" + s.broker + ")";
            if (s.state !== "connected" && s.last_error) line += ": " + s.last_error;
            return line;
        });

        self.fromStatus = function (status) {
            if (status) self.status(status);
        };

        self.requestStatus = function () {
            if (!self.canSee()) return;
            OctoPrint.simpleApiGet("mqtt").done(function (response) {
                self.fromStatus(response.status);
            });
        };

        self.onDataUpdaterPluginMessage = function (plugin, data) {
            if (plugin !== "mqtt" || !data || data.type !== "status") return;
            self.fromStatus(data.status);
        };

        self.onStartupComplete =
            self.onUserLoggedIn =
            self.onServerReconnect =
                function () {
                    self.requestStatus();
                };
        self.onUserLoggedOut = function () {
            self.status(null);
        };

        self.openSettings = function () {
            self.settingsViewModel.show("settings_plugin_mqtt");
        };

        // ~~ settings fields

        self.hasPassword = ko.pureComputed(function () {
            var cfg = self.cfg();
            // Absent for users who may not read it (OctoPrint strips restricted paths).
            return !!cfg && ko.isObservable(cfg.broker.password);
        });
        self.isWebsockets = ko.pureComputed(function () {
            var cfg = self.cfg();
            return !!cfg && cfg.broker.transport() === "websockets";
        });

        function field(read) {
            return ko.pureComputed(function () {
                var cfg = self.cfg();
                return cfg ? read(cfg.broker, cfg.publish) : "";
            });
        }

        // Checked fields: [path under plugins.mqtt, error computed].
        self.errors = {
            port: field(function (b) {
                return wholeNumberError(b.port(), 1, 65535);
            }),
            keepalive: field(function (b) {
                return wholeNumberError(b.keepalive(), 0, 65535);
            }),
            url: field(function (b) {
                var url = text(b.url()).trim();
                return url.indexOf("://") >= 0 || /\s/.test(url)
                    ? gettext("only the host name or IP address (no mqtt://, no port)")
                    : "";
            }),
            offlineQueueSize: field(function (b, p) {
                return wholeNumberError(p.offlineQueueSize(), 0, 10000000);
            }),
            temperatureThreshold: field(function (b, p) {
                var t = text(p.temperatureThreshold()).trim();
                return t === "" || isNaN(Number(t)) || Number(t) < 0
                    ? gettext("a number of degrees, 0 or more")
                    : "";
            }),
            baseTopic: field(function (b, p) {
                return topicError("", p.baseTopic(), false);
            }),
            eventTopic: field(function (b, p) {
                return topicError(p.baseTopic(), p.eventTopic(), true);
            }),
            progressTopic: field(function (b, p) {
                return topicError(p.baseTopic(), p.progressTopic(), true);
            }),
            temperatureTopic: field(function (b, p) {
                return topicError(p.baseTopic(), p.temperatureTopic(), true);
            }),
            metadataTopic: field(function (b, p) {
                return topicError(p.baseTopic(), p.metadataTopic(), true);
            }),
            lwTopic: field(function (b, p) {
                return topicError(p.baseTopic(), p.lwTopic(), true);
            })
        };
        var PATHS = {
            port: ["broker", "port"],
            keepalive: ["broker", "keepalive"],
            url: ["broker", "url"],
            offlineQueueSize: ["publish", "offlineQueueSize"],
            temperatureThreshold: ["publish", "temperatureThreshold"],
            baseTopic: ["publish", "baseTopic"],
            eventTopic: ["publish", "eventTopic"],
            progressTopic: ["publish", "progressTopic"],
            temperatureTopic: ["publish", "temperatureTopic"],
            metadataTopic: ["publish", "metadataTopic"],
            lwTopic: ["publish", "lwTopic"]
        };

        self.loadSettings = function () {
            var plugins = self.settingsViewModel.settings.plugins;
            self.cfg(plugins && plugins.mqtt ? plugins.mqtt : null);
        };
        self.onBeforeBinding = self.loadSettings;

        self.onSettingsShown = function () {
            self.loadSettings();
            self.testResult(null);
            self.requestStatus();
        };

        // Invalid values are put back to the saved ones rather than saved (the server would
        // refuse them too).
        self.onSettingsBeforeSave = function () {
            var cfg = self.cfg();
            var saved = (self.settingsViewModel.lastReceivedSettings || {}).plugins;
            saved = saved && saved.mqtt;
            if (!cfg || !saved) return;
            var reverted = [];
            _.each(self.errors, function (error, name) {
                if (!error()) return;
                var path = PATHS[name];
                cfg[path[0]][path[1]](saved[path[0]][path[1]]);
                reverted.push(path.join("."));
            });
            if (reverted.length) {
                new PNotify({
                    title: gettext("MQTT settings not saved"),
                    text: _.sprintf(gettext("Invalid values were reset: %(fields)s"), {
                        fields: reverted.join(", ")
                    }),
                    type: "error"
                });
            }
        };

        // ~~ test connection

        self.testConnection = function () {
            var cfg = self.cfg();
            if (!cfg || self.testing()) return;
            var form = {broker: ko.toJS(cfg.broker), client: ko.toJS(cfg.client)};
            self.testing(true);
            self.testResult(null);
            OctoPrint.simpleApiCommand("mqtt", "test_connection", {settings: form})
                .done(function (result) {
                    self.testResult(result);
                })
                .fail(function (xhr) {
                    var reason =
                        (xhr.responseJSON && xhr.responseJSON.reason) ||
                        _.sprintf(gettext("the server answered %(status)s"), {
                            status: xhr.status
                        });
                    self.testResult({ok: false, reason: reason});
                })
                .always(function () {
                    self.testing(false);
                });
        };
        self.testText = ko.pureComputed(function () {
            var r = self.testResult();
            if (!r) return "";
            var elapsed = r.elapsed ? " (" + Math.round(r.elapsed * 1000) + " ms)" : "";
            var reason = r.ok ? r.reason.charAt(0).toUpperCase() + r.reason.slice(1) : r.reason;
            return (r.ok ? "" : gettext("Failed: ")) + reason + elapsed;
        });
    }

    OCTOPRINT_VIEWMODELS.push({
        construct: MqttViewModel,
        dependencies: ["loginStateViewModel", "accessViewModel", "settingsViewModel"],
        elements: ["#settings_plugin_mqtt", "#navbar_plugin_mqtt"]
    });
});
