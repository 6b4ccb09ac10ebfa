/*
 * MQTT settings page and navbar indicator.
 *
 * The status arrives over OctoPrint's socket (plugin messages the server pushes when it
 * changes); it is fetched over the API only when the page loads or the user logs in, so
 * there is no polling. Fields are checked with the core's rules (src/rules.rs), which the
 * settings template hands over as data; the server refuses what they refuse on save.
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

    // ngettext, but with the English forms where the locale has none: OctoPrint's JavaScript
    // catalog hands over a plural message a locale left untranslated as empty strings, which
    // ngettext would show as they are. scripts/translations.sh extracts its calls too.
    function plural(singular, pluralForm, n) {
        return ngettext(singular, pluralForm, n) || (n === 1 ? singular : pluralForm);
    }

    function text(value) {
        return value === undefined || value === null ? "" : String(value);
    }

    // The rules of src/rules.rs, as the settings template embeds them.
    function settingRules() {
        var node = document.getElementById("mqtt_setting_rules");
        return node ? JSON.parse(node.textContent) : [];
    }

    // plugin.py own_base_topic: the base topic "Use topics of their own" sets.
    function ownBaseTopic() {
        var node = document.getElementById("mqtt_own_base_topic");
        return node ? JSON.parse(node.textContent) : "";
    }

    function utf8Length(t) {
        return new TextEncoder().encode(t).length;
    }

    // The settings parse reads these (Rust's i64 and f64 parse of the trimmed text).
    var WHOLE = /^[+-]?\d+$/;
    var NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

    function topicError(full, part, checkEmpty, maxBytes) {
        if (/[+#]/.test(part)) {
            return gettext("topics cannot contain the wildcards + or #");
        }
        if (full.indexOf("\u0000") >= 0) {
            return gettext("topics cannot contain NUL");
        }
        if (checkEmpty && !full.length) {
            return gettext("the topic would be empty");
        }
        if (utf8Length(full) > maxBytes) {
            return _.sprintf(gettext("the topic would be longer than %(max)s bytes"), {
                max: maxBytes
            });
        }
        return "";
    }

    // MQTT's longest topic (src/topic.rs MAX_TOPIC_BYTES); the template and base-topic rules
    // carry it, the whole-topic kinds do not.
    var MAX_TOPIC_BYTES = 65535;
    // src/config.rs NODE_ID_RULE, without its "must be" (the page's messages say what to enter).
    var NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;
    function nodeIdRule() {
        return gettext(
            "1 to 64 letters, digits, '_' or '-' (Home Assistant's rule for discovery topics)"
        );
    }

    // How the settings parse reads a topic (rules.rs `topic_text`): numbers as their digits,
    // anything else that is not text as nothing; then Rust's trim.
    function topicText(value) {
        var t = typeof value === "string" || typeof value === "number" ? String(value) : "";
        return t.replace(EDGE_SPACE, "");
    }

    // The request topic template with a command's name in it (control.rs renders it so).
    function withCommand(template, command) {
        return template.split("{command}").join(command);
    }

    // ~~ event name patterns: src/glob.rs and src/lenient.rs (`pattern_entries`) in
    // JavaScript, reason for reason, so that the page says what the server will say on save.
    // Rust's notions of whitespace and control characters are Unicode's White_Space and Cc,
    // hence the property escapes rather than \s and String.trim (which differ on U+0085 and
    // U+FEFF); characters are compared as code points, not UTF-16 units.

    var INVISIBLE = /[\p{White_Space}\p{Cc}]/u;
    var FOREIGN = /[\p{White_Space}\p{Cc}\/+#\\]/u;
    var EDGE_SPACE = /^\p{White_Space}+|\p{White_Space}+$/gu;

    function codePoint(c) {
        var hex = c.codePointAt(0).toString(16).toUpperCase();
        while (hex.length < 4) hex = "0" + hex;
        return "U+" + hex;
    }

    function charName(c) {
        if (c === " ") return gettext("a space");
        return INVISIBLE.test(c) ? codePoint(c) : '"' + c + '"';
    }

    function quoted(pattern) {
        var shown = _.map(Array.from(pattern), function (c) {
            return c !== " " && INVISIBLE.test(c) ? "<" + codePoint(c) + ">" : c;
        });
        return '"' + shown.join("") + '"';
    }

    // lenient.rs's names of what a settings value is.
    function kindName(v) {
        if (v === null || v === undefined) return gettext("nothing (null)");
        if (typeof v === "boolean") return gettext("true/false");
        if (typeof v === "number") return gettext("a number");
        if (typeof v === "string") return gettext("text");
        return _.isArray(v) ? gettext("a list") : gettext("a dict");
    }

    function patternError(pattern) {
        if (!pattern.length) return gettext("an empty pattern");
        var chars = Array.from(pattern);
        var foreign = _.find(chars, function (c) {
            return FOREIGN.test(c);
        });
        if (foreign !== undefined) {
            return _.sprintf(gettext("contains %(char)s, which no event name has"), {
                char: charName(foreign)
            });
        }
        for (var i = 0; i < chars.length; i++) {
            if (chars[i] === "]") {
                return _.sprintf(gettext("the ] at character %(n)s closes no set"), {n: i + 1});
            }
            if (chars[i] !== "[") continue;
            var first = i + 1 + (chars[i + 1] === "!" ? 1 : 0);
            var close = chars.indexOf("]", first);
            if (close < 0) {
                return _.sprintf(gettext("the [ at character %(n)s is never closed"), {n: i + 1});
            }
            if (close === first) {
                return _.sprintf(gettext("the set at character %(n)s is empty"), {n: i + 1});
            }
            for (var j = first; j < close; ) {
                if (j + 2 < close && chars[j + 1] === "-") {
                    if (chars[j + 2].codePointAt(0) < chars[j].codePointAt(0)) {
                        return _.sprintf(
                            gettext("the range %(low)s-%(high)s at character %(n)s is backwards"),
                            {low: chars[j], high: chars[j + 2], n: j + 1}
                        );
                    }
                    j += 3;
                } else {
                    j += 1;
                }
            }
            i = close;
        }
        return "";
    }

    function patternsError(value) {
        var entries = [];
        if (typeof value === "string") {
            entries = _.filter(
                _.map(value.split(","), function (p) {
                    return p.replace(EDGE_SPACE, "");
                }),
                function (p) {
                    return p.length > 0;
                }
            );
        } else if (_.isArray(value)) {
            for (var i = 0; i < value.length; i++) {
                if (typeof value[i] !== "string") {
                    return _.sprintf(gettext("entry %(n)s is %(kind)s, not text"), {
                        n: i + 1,
                        kind: kindName(value[i])
                    });
                }
                entries.push(value[i].replace(EDGE_SPACE, ""));
            }
        } else if (value !== null && value !== undefined) {
            return _.sprintf(gettext("expected a list of event names or patterns, got %(kind)s"), {
                kind: kindName(value)
            });
        }
        var unusable = [];
        _.each(entries, function (p) {
            var why = patternError(p);
            if (why) unusable.push(quoted(p) + ": " + why);
        });
        return unusable.join("; ");
    }

    // True when a failover entry is not host, host:port, [v6]:port or a bare IPv6 address.
    function addressError(entry) {
        if (!entry.length) return false;
        if (entry.indexOf("://") >= 0 || /[\s\/]/.test(entry)) return true;
        var host = entry;
        var port = null;
        var v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(entry);
        if (entry[0] === "[") {
            if (!v6) return true;
            host = v6[1];
            port = v6[2] === undefined ? null : v6[2];
        } else if ((entry.match(/:/g) || []).length === 1) {
            host = entry.split(":")[0];
            port = entry.split(":")[1];
        }
        if (!host.length) return true;
        if (port === null) return false;
        return !/^[0-9]+$/.test(port) || Number(port) < 1 || Number(port) > 65535;
    }

    // The patterns field takes them separated by commas or whitespace, as typed.
    function splitPatterns(typed) {
        return _.filter(text(typed).split(/[\p{White_Space},]+/u), function (p) {
            return p.length > 0;
        });
    }

    // The reason `value` breaks `rule` ("" when it does not); `base` is the base topic.
    // `template`: the control topic in force (the response topic's rule needs it).
    function ruleError(rule, value, base, template) {
        var t = text(value).trim();
        switch (rule.kind) {
            case "whole":
                return WHOLE.test(t) && Number(t) >= rule.min && Number(t) <= rule.max
                    ? ""
                    : _.sprintf(gettext("a whole number from %(low)s to %(high)s"), {
                          low: rule.min,
                          high: rule.max
                      });
            case "number":
                var n = Number(t);
                if (NUMBER.test(t) && isFinite(n) && n >= rule.min && n <= rule.max) return "";
                if (rule.unit === "degrees") return gettext("a number of degrees, 0 or more");
                if (rule.unit === "seconds") {
                    return _.sprintf(gettext("a number of seconds from %(low)s to %(high)s"), {
                        low: rule.min,
                        high: rule.max
                    });
                }
                return _.sprintf(gettext("a number, %(low)s or more"), {low: rule.min});
            case "host":
                if (value === undefined || value === null) return "";
                return typeof value !== "string" || t.indexOf("://") >= 0 || /\s/.test(t)
                    ? gettext("only the host name or IP address (no mqtt://, no port)")
                    : "";
            case "base_topic":
                return topicError(text(value), text(value), false, rule.max_bytes);
            case "template":
                var part = text(value);
                var rendered = rule.placeholder
                    ? part.split("{" + rule.placeholder + "}").join(rule.sample)
                    : part;
                return topicError(text(base) + rendered, part, true, rule.max_bytes);
            // config.rs failover_address, for each comma-separated entry.
            case "addresses":
                if (value === undefined || value === null) return "";
                if (_.isArray(value) && !_.every(value, _.isString)) {
                    return gettext("enter the addresses as text");
                }
                if (!_.isArray(value) && !_.isString(value)) {
                    return gettext("enter the addresses as text");
                }
                var entries = _.isArray(value) ? value : value.split(",");
                var wrong = _.filter(entries, function (entry) {
                    return addressError(text(entry).trim());
                });
                return wrong.length
                    ? _.sprintf(gettext("not host or host:port: %(entries)s"), {
                          entries: _.map(wrong, function (e) {
                              return text(e).trim();
                          }).join(", ")
                      })
                    : "";
            case "patterns":
                return patternsError(value);
            // config.rs birth_topic_problem: nothing (not watched) or a whole topic.
            case "topic":
                var topic = topicText(value);
                return topic.length ? topicError(topic, topic, true, MAX_TOPIC_BYTES) : "";
            // config.rs prefix_problem: the prefix is judged as the first levels of a config
            // topic, after its trailing slashes are dropped.
            case "prefix":
                var prefix = topicText(value).replace(/\/+$/, "");
                if (!prefix.length) return gettext("the discovery prefix cannot be empty");
                var config = prefix + "/sensor/node/object/config";
                return topicError(config, prefix, true, MAX_TOPIC_BYTES);
            // control.rs request_topic_problem: {command} once, as a whole level.
            case "request_topic":
                var template = topicText(value);
                if (template.split("{command}").length !== 2) {
                    return gettext("the control topic must hold {command} exactly once");
                }
                if (!_.contains((text(base) + template).split("/"), "{command}")) {
                    return gettext(
                        "{command} must fill a whole level of the control topic (between slashes)"
                    );
                }
                var request = withCommand(template, "pause");
                return topicError(text(base) + request, request, true, rule.max_bytes);
            case "response_topic":
                var response = topicText(value);
                if (!response.length) return gettext("the response topic cannot be empty");
                var bad = topicError(text(base) + response, response, true, rule.max_bytes);
                if (bad) return bad;
                // control.rs: an answer on a request topic would be taken for a request.
                var requests = topicText(template === undefined ? "control/{command}" : template);
                var taken = _.find(rule.commands, function (command) {
                    return text(base) + withCommand(requests, command) === text(base) + response;
                });
                return taken
                    ? _.sprintf(gettext('the response topic is the request topic of "%(command)s"'), {
                          command: taken
                      })
                    : "";
            case "node_id":
                if (value === undefined || value === null) return "";
                if (typeof value === "string") {
                    var id = value.replace(EDGE_SPACE, "");
                    if (!id.length || NODE_ID.test(id)) return "";
                }
                return nodeIdRule();
        }
        return "";
    }

    function ago(seconds) {
        if (seconds < 60) return gettext("just now");
        if (seconds < 3600) return _.sprintf(gettext("%(n)d min ago"), {n: seconds / 60});
        if (seconds < 86400) return _.sprintf(gettext("%(n)d h ago"), {n: seconds / 3600});
        var days = Math.floor(seconds / 86400);
        return _.sprintf(plural("%(n)d day ago", "%(n)d days ago", days), {n: days});
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
        // Home Assistant discovery as the core runs it (with the saved settings).
        self.homeassistant = ko.observable(null);
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
        self.otherInstances = ko.pureComputed(function () {
            var s = self.status();
            return (s && s.other_instances) || [];
        });
        self.otherInstancesText = ko.pureComputed(function () {
            return _.map(self.otherInstances(), function (o) {
                return o.host + " (" + o.id + ")";
            }).join(", ");
        });
        self.ownBaseTopic = ko.observable(ownBaseTopic());
        self.useOwnTopics = function () {
            var cfg = self.cfg();
            if (cfg) cfg.publish.baseTopic(self.ownBaseTopic());
        };
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
            var line = _.sprintf(gettext("MQTT: %(state)s"), {state: self.stateText()});
            if (s.broker) line += " (" + s.broker + ")";
            if (s.state !== "connected" && s.last_error) line += ": " + s.last_error;
            return line;
        });

        self.fromStatus = function (status, homeassistant) {
            if (status) self.status(status);
            if (homeassistant) self.homeassistant(homeassistant);
        };

        self.requestStatus = function () {
            if (!self.canSee()) return;
            OctoPrint.simpleApiGet("mqtt").done(function (response) {
                self.fromStatus(response.status, response.homeassistant);
            });
        };

        self.onDataUpdaterPluginMessage = function (plugin, data) {
            if (plugin !== "mqtt" || !data || data.type !== "status") return;
            self.fromStatus(data.status, data.homeassistant);
        };

        self.onStartupComplete =
            self.onUserLoggedIn =
            self.onServerReconnect =
                function () {
                    self.requestStatus();
                };
        self.onUserLoggedOut = function () {
            self.status(null);
            self.homeassistant(null);
        };

        // ~~ Home Assistant

        self.otherDiscoveryPlugin = ko.pureComputed(function () {
            var ha = self.homeassistant();
            if (!ha || ha.off !== "other_plugin") return "";
            return ha.other_plugin || "OctoPrint-HomeAssistant";
        });
        // The API names the node id in force: the generated one only while none is saved.
        self.generatedNodeId = ko.pureComputed(function () {
            var ha = self.homeassistant();
            var saved = (self.settingsViewModel.lastReceivedSettings || {}).plugins;
            var savedId = saved && saved.mqtt && saved.mqtt.homeassistant
                ? text(saved.mqtt.homeassistant.nodeId).trim()
                : "";
            return ha && ha.node_id && !savedId ? ha.node_id : gettext("generated");
        });
        self.discoveryText = ko.pureComputed(function () {
            var ha = self.homeassistant();
            if (!ha) return "";
            switch (ha.off) {
                case null:
                case undefined:
                    return _.sprintf(
                        plural(
                            "%(n)s entity published as node %(node)s",
                            "%(n)s entities published as node %(node)s",
                            ha.entities
                        ),
                        {n: ha.entities, node: ha.node_id}
                    );
                case "setting":
                    return gettext("Discovery is off.");
                case "no_state_topic":
                    return gettext(
                        "Discovery is off: the state topic is off, and the entities read it."
                    );
                case "other_plugin":
                    return _.sprintf(gettext("Discovery is off: %(plugin)s is loaded."), {
                        plugin: self.otherDiscoveryPlugin()
                    });
                case "uninstalling":
                    return gettext("Discovery is off: the plugin is being uninstalled.");
            }
            return "";
        });
        self.discoveryOn = ko.pureComputed(function () {
            var ha = self.homeassistant();
            return !!ha && !ha.off;
        });

        // ~~ remote control

        // The topics as the core builds them: the control topics trimmed, the base topic as
        // it is (config.rs `Control::sanitize`).
        self.controlRequestExample = ko.pureComputed(function () {
            var cfg = self.cfg();
            if (!cfg) return "";
            var template = topicText(cfg.control.topic());
            return text(cfg.publish.baseTopic()) + withCommand(template, "pause");
        });
        self.controlResponseExample = ko.pureComputed(function () {
            var cfg = self.cfg();
            if (!cfg) return "";
            return text(cfg.publish.baseTopic()) + topicText(cfg.control.responseTopic());
        });

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

        // One error computed per rule, named by the rule's key (the template's `check=`).
        var RULES = settingRules();
        var PATHS = {};
        self.errors = {};
        _.each(RULES, function (rule) {
            var name = rule.path[1];
            PATHS[name] = rule.path;
            self.errors[name] = ko.pureComputed(function () {
                var cfg = self.cfg();
                if (!cfg) return "";
                return ruleError(
                    rule,
                    cfg[rule.path[0]][name](),
                    cfg.publish.baseTopic(),
                    cfg.control ? cfg.control.topic() : undefined
                );
            });
        });
        // For tests: the page's verdict on `value` for the field at `path`.
        self.checkValue = function (path, value, base) {
            var rule = _.find(RULES, function (r) {
                return _.isEqual(r.path, path);
            });
            return rule ? ruleError(rule, value, base === undefined ? "" : base) : null;
        };

        // `publish.eventExclude` is a list; its field is text. What was typed is shown as
        // typed (a trailing comma stays while the next name is being written) as long as it
        // still says what the list holds; otherwise the list, joined.
        var excludeTyped = ko.observable(null);
        self.eventExcludeText = ko.pureComputed({
            read: function () {
                var cfg = self.cfg();
                if (!cfg || !ko.isObservable(cfg.publish.eventExclude)) return "";
                var stored = cfg.publish.eventExclude();
                var typed = excludeTyped();
                if (typed !== null && _.isEqual(splitPatterns(typed), stored)) return typed;
                return _.isArray(stored) ? stored.join(", ") : text(stored);
            },
            write: function (typed) {
                var cfg = self.cfg();
                if (!cfg || !ko.isObservable(cfg.publish.eventExclude)) return;
                excludeTyped(typed);
                cfg.publish.eventExclude(splitPatterns(typed));
            }
        });

        self.loadSettings = function () {
            var plugins = self.settingsViewModel.settings.plugins;
            self.cfg(plugins && plugins.mqtt ? plugins.mqtt : null);
        };
        self.onBeforeBinding = self.loadSettings;

        self.onSettingsShown = function () {
            self.loadSettings();
            excludeTyped(null);
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
                // A copy: a list put back must not be the one OctoPrint keeps as received.
                cfg[path[0]][path[1]](_.clone(saved[path[0]][path[1]]));
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
            // The reason and the warnings are the server's words (English, as in the log).
            var elapsed = r.elapsed
                ? " (" + _.sprintf(gettext("%(ms)s ms"), {ms: Math.round(r.elapsed * 1000)}) + ")"
                : "";
            var reason = r.ok
                ? r.reason.charAt(0).toUpperCase() + r.reason.slice(1)
                : _.sprintf(gettext("Failed: %(reason)s"), {reason: r.reason});
            // Stored values the connection replaces by their defaults, as the test did.
            var notes = r.warnings && r.warnings.length ? "; " + r.warnings.join("; ") : "";
            return reason + elapsed + notes;
        });
    }

    OCTOPRINT_VIEWMODELS.push({
        construct: MqttViewModel,
        dependencies: ["loginStateViewModel", "accessViewModel", "settingsViewModel"],
        elements: ["#settings_plugin_mqtt", "#navbar_plugin_mqtt"]
    });
});
