//! `mqtt_subscribe` and `mqtt_unsubscribe`: changes to the one record of subscriptions (the
//! registry) and the broker commands they call for, made one at a time. A duplicate check and
//! its insert happen in one turn, and each change's command is sent in the same turn, so the
//! core's thread gets them in the order the registry changed (an unsubscribe never overtakes
//! its subscribe).

use std::sync::{Condvar, Mutex};

use pyo3::prelude::*;

use crate::dispatch::{Handler, SharedRegistry};
use crate::message::Qos;
use crate::registry::{BrokerChange, Registry};
use crate::runner::Command;

pub struct Subscriptions {
    registry: SharedRegistry,
    /// Whether a change is under way. Not a plain mutex: the turn is waited for without the
    /// GIL (the holder may be running a callback's `__eq__`, which needs it), and a mutex
    /// guard cannot cross that boundary.
    busy: Mutex<bool>,
    free: Condvar,
}

/// Ends the turn when dropped, also on an exception from `__eq__`.
struct Turn<'a>(&'a Subscriptions);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.free.notify_one();
    }
}

fn command(change: BrokerChange) -> Command {
    match change {
        BrokerChange::Subscribe(filter, qos) => Command::Subscribe { filter, qos },
        BrokerChange::Unsubscribe(filter) => Command::Unsubscribe { filter },
    }
}

impl Subscriptions {
    pub fn new(registry: SharedRegistry) -> Self {
        Subscriptions {
            registry,
            busy: Mutex::new(false),
            free: Condvar::new(),
        }
    }

    fn turn(&self, py: Python<'_>) -> Turn<'_> {
        py.detach(|| {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            while *busy {
                busy = self.free.wait(busy).unwrap_or_else(|p| p.into_inner());
            }
            *busy = true;
        });
        Turn(self)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry<Handler>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `handler` on `filter` unless an equal callback already is; `tell` hands the
    /// core's thread what the broker must be told.
    pub fn subscribe(
        &self,
        py: Python<'_>,
        filter: &str,
        qos: Qos,
        handler: Handler,
        tell: impl Fn(Command),
    ) -> PyResult<()> {
        let _turn = self.turn(py);
        // Compared outside the registry's lock: `==` may run Python code, and the callbacks'
        // thread takes that lock for every message.
        let same_filter: Vec<Py<PyAny>> = self
            .registry()
            .entries()
            .filter(|e| e.filter == filter)
            .map(|e| e.handler.callback.clone_ref(py))
            .collect();
        let callback = handler.callback.bind(py);
        for existing in same_filter {
            if existing.bind(py).eq(callback)? {
                return Ok(());
            }
        }
        let change = self.registry().add(filter, qos, handler);
        if let Some(change) = change {
            tell(command(change));
        }
        Ok(())
    }

    /// Removes the subscriptions whose callback `==` `callback` (on `filter` only, when given).
    pub fn unsubscribe(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        filter: Option<&str>,
        tell: impl Fn(Command),
    ) {
        let _turn = self.turn(py);
        let candidates: Vec<(u64, Py<PyAny>)> = self
            .registry()
            .entries()
            .filter(|e| filter.is_none_or(|f| e.filter == f))
            .map(|e| (e.id, e.handler.callback.clone_ref(py)))
            .collect();
        let ids: Vec<u64> = candidates
            .into_iter()
            .filter(|(_, existing)| existing.bind(py).eq(callback).unwrap_or(false))
            .map(|(id, _)| id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let (changes, removed) = self.registry().remove(&ids);
        for change in changes {
            tell(command(change));
        }
        drop(removed); // after the registry's lock is released: `__del__` may run
    }
}
