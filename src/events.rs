//! OctoPrint event classes (docs/behaviour.md §3.3), each switched by `publish.events.<class>`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    Server,
    Comm,
    Files,
    Printjob,
    Gcode,
    Position,
    Timelapse,
    Slicing,
    Settings,
    Unclassified,
}

/// Maps an event name to its class; names OctoPrint (or a plugin) adds later are unclassified.
pub fn classify(event: &str) -> EventClass {
    use EventClass::*;
    match event {
        "Startup" | "Shutdown" | "ClientOpened" | "ClientClosed" | "ConnectivityChanged" => Server,
        "Connecting"
        | "Connected"
        | "Disconnecting"
        | "Disconnected"
        | "Error"
        | "PrinterStateChanged" => Comm,
        "Upload"
        | "FileAdded"
        | "FileRemoved"
        | "FolderAdded"
        | "FolderRemoved"
        | "UpdatedFiles"
        | "MetadataAnalysisStarted"
        | "MetadataAnalysisFinished"
        | "FileSelected"
        | "FileDeselected"
        | "TransferStarted"
        | "TransferFailed"
        | "TransferDone" => Files,
        "PrintStarted" | "PrintFailed" | "PrintDone" | "PrintCancelled" | "PrintPaused"
        | "PrintResumed" => Printjob,
        "PowerOn" | "PowerOff" | "Home" | "Dwelling" | "Waiting" | "Cooling" | "Alert"
        | "Conveyor" | "Eject" | "EStop" | "ToolChange" | "PausedForUser" => Gcode,
        "ZChange" | "PositionUpdate" => Position,
        "CaptureStart" | "CaptureFailed" | "CaptureDone" | "MovieRendering" | "MovieDone"
        | "MovieFailed" => Timelapse,
        "SlicingStarted"
        | "SlicingDone"
        | "SlicingCancelled"
        | "SlicingFailed"
        | "SlicingProfileAdded"
        | "SlicingProfileDeleted"
        | "SlicingProfileModified" => Slicing,
        "SettingsUpdated" => Settings,
        _ => Unclassified,
    }
}

/// Events whose retain flag follows `broker.retain`; every other event is published unretained.
pub fn retain_follows_broker(event: &str) -> bool {
    matches!(event, "ZChange" | "FirmwareData")
}

/// `publish.events`: one switch per class, all on by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct EventToggles {
    pub server: bool,
    pub comm: bool,
    pub files: bool,
    pub printjob: bool,
    pub gcode: bool,
    pub position: bool,
    pub timelapse: bool,
    pub slicing: bool,
    pub settings: bool,
    pub unclassified: bool,
}

impl Default for EventToggles {
    fn default() -> Self {
        EventToggles {
            server: true,
            comm: true,
            files: true,
            printjob: true,
            gcode: true,
            position: true,
            timelapse: true,
            slicing: true,
            settings: true,
            unclassified: true,
        }
    }
}

impl EventToggles {
    pub fn enabled(&self, class: EventClass) -> bool {
        use EventClass::*;
        match class {
            Server => self.server,
            Comm => self.comm,
            Files => self.files,
            Printjob => self.printjob,
            Gcode => self.gcode,
            Position => self.position,
            Timelapse => self.timelapse,
            Slicing => self.slicing,
            Settings => self.settings,
            Unclassified => self.unclassified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_known_events() {
        assert_eq!(classify("Startup"), EventClass::Server);
        assert_eq!(classify("PrinterStateChanged"), EventClass::Comm);
        assert_eq!(classify("FileDeselected"), EventClass::Files);
        assert_eq!(classify("PrintDone"), EventClass::Printjob);
        assert_eq!(classify("PausedForUser"), EventClass::Gcode);
        assert_eq!(classify("ZChange"), EventClass::Position);
        assert_eq!(classify("MovieDone"), EventClass::Timelapse);
        assert_eq!(classify("SlicingProfileModified"), EventClass::Slicing);
        assert_eq!(classify("SettingsUpdated"), EventClass::Settings);
    }

    #[test]
    fn unknown_events_are_unclassified() {
        for name in [
            "FirmwareData",
            "UserLoggedIn",
            "ChartMarked",
            "plugin_x_thing",
            "",
        ] {
            assert_eq!(classify(name), EventClass::Unclassified, "{name}");
        }
    }

    #[test]
    fn retain_rule() {
        assert!(retain_follows_broker("ZChange"));
        assert!(retain_follows_broker("FirmwareData"));
        assert!(!retain_follows_broker("PrintDone"));
        assert!(!retain_follows_broker("PausedForUser"));
    }

    #[test]
    fn toggles_switch_their_class_only() {
        let t = EventToggles {
            gcode: false,
            ..Default::default()
        };
        assert!(!t.enabled(classify("Dwelling")));
        assert!(t.enabled(classify("ZChange")));
        assert!(t.enabled(EventClass::Unclassified));
    }
}
