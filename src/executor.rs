//! The thread that runs remote control commands, one at a time in arrival order, so that a
//! slow one (OctoPrint waiting for the printer) never delays the connection or other plugins'
//! callbacks. The printer actions are the plugin's Python handler; `status` is answered from
//! the printer's state the core keeps.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyString;
use tokio::sync::mpsc::UnboundedSender;

use crate::control::{Job, Outcome};
use crate::printer::Printer;
use crate::runner::Command;

/// Commands waiting for the thread, at most; more are answered "busy".
pub const CAPACITY: usize = 32;

/// `handler(command, args) -> (ok, result_or_reason)`, set by the plugin.
pub type Handler = Arc<Mutex<Option<Py<PyAny>>>>;

pub struct Executor {
    jobs: SyncSender<Job>,
    /// Set when the core stops: jobs still waiting are not run (the core answered them).
    stopping: Arc<AtomicBool>,
}

/// Why a job was not taken.
pub enum NotTaken {
    Busy(Job),
    /// The thread is gone (it panicked): nothing runs any more.
    Gone(Job),
}

impl Executor {
    /// Never waits: gives the job back when [`CAPACITY`] commands are waiting.
    pub fn try_run(&self, job: Job) -> Result<(), NotTaken> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(NotTaken::Busy(job)),
            Err(TrySendError::Disconnected(job)) => Err(NotTaken::Gone(job)),
        }
    }

    pub fn stop(&self) {
        self.stopping.store(true, Relaxed);
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the thread; each outcome goes back to the core's thread as [`Command::Done`]. It
/// ends when the [`Executor`] is dropped.
pub fn spawn(
    handler: Handler,
    printer: Arc<Printer>,
    done: UnboundedSender<Command>,
) -> std::io::Result<Executor> {
    let (jobs, rx) = sync_channel::<Job>(CAPACITY);
    let stopping = Arc::new(AtomicBool::new(false));
    let stop = stopping.clone();
    std::thread::Builder::new()
        .name("mqtt-control".into())
        .spawn(move || {
            for job in rx {
                if stop.load(Relaxed) {
                    continue;
                }
                let outcome = match job.command {
                    "status" => match printer.status() {
                        Some(state) => Outcome::Done(Some(state)),
                        None => Outcome::Refused("the printer's state is not known yet".into()),
                    },
                    _ => Python::attach(|py| call(py, &handler, &job)),
                };
                let _ = done.send(Command::Done {
                    seq: job.seq,
                    outcome,
                });
            }
        })?;
    Ok(Executor { jobs, stopping })
}

fn call(py: Python<'_>, handler: &Handler, job: &Job) -> Outcome {
    let handler = handler
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|h| h.clone_ref(py));
    let Some(handler) = handler else {
        return Outcome::Retry("remote control is not ready yet".into());
    };
    let outcome = pythonize::pythonize(py, &job.args)
        .map_err(PyErr::from)
        .and_then(|args| handler.call1(py, (job.command, args)))
        .and_then(|r| r.extract::<(bool, Py<PyAny>)>(py));
    match outcome {
        Ok((true, result)) if result.is_none(py) => Outcome::Done(None),
        Ok((true, result)) => match pythonize::depythonize(result.bind(py)) {
            Ok(v) => Outcome::Done(Some(v)),
            Err(e) => internal(job, &format!("its result is not JSON ({e})")),
        },
        Ok((false, reason)) => Outcome::Refused(
            reason
                .bind(py)
                .str()
                .map(|s: Bound<'_, PyString>| s.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "refused".into()),
        ),
        Err(e) => internal(job, &e.to_string()),
    }
}

fn internal(job: &Job, what: &str) -> Outcome {
    error!(
        "Remote control: {} failed inside the plugin: {what}",
        job.command
    );
    Outcome::Refused(format!(
        "{} failed inside OctoPrint (see octoprint.log)",
        job.command
    ))
}
