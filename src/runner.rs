//! The core's own thread: a single-threaded tokio runtime running [`Runner`], the connection
//! state machine. Python threads talk to it only through [`Handle`]: a bounded command
//! channel they never wait on, a shutdown signal, and the shared status.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{timeout_at, Instant};

use crate::announce::{Birth, Memo};
use crate::config::{ConnectionConfig, Protocol, StatusTopic};
use crate::control::{Control, Outcome, Setup as ControlSetup, Taken};
use crate::delivery::{Delivery, Written};
use crate::discovery::Discovery;
use crate::dispatch::{Inbox, SharedRegistry};
use crate::executor::{self, Executor};
use crate::failure::Loss;
use crate::instance::{Card, Instances, Seen};
use crate::link::{self, NetEvent, Session};
use crate::message::{Identity, Incoming, Message, Qos};
use crate::printer::Printer;
use crate::status::{Shared, State};

/// Commands waiting for the core's thread. Far more than a burst of events: when it is full
/// the core is stuck, and the caller gets a counted drop instead of a wait.
const COMMAND_CAPACITY: usize = 65_536;
/// Bytes of topics and payloads waiting in that channel, at most (one message always goes):
/// the count alone would let 65,536 camera snapshots wait there.
const COMMAND_BYTES_MAX: usize = 64 << 20;
/// How long a clean disconnect (on shutdown or a broker change) may take.
const CLOSE_BUDGET: Duration = Duration::from_millis(900);
/// The end of that budget kept for `disconnected` and DISCONNECT: a backlog still waiting
/// then stays queued for the next connection.
const CLOSE_TAIL: Duration = Duration::from_millis(300);
/// Commands taken per wake-up before handing messages to the client.
const BATCH: usize = 512;
/// A connection the broker closes within this long after a message of at least
/// [`SUSPECT_MIN`] bytes was sent is taken as the broker refusing that message: a 3.1.1
/// broker has no other way to refuse a packet over its size limit.
const SUSPECT_WINDOW: Duration = Duration::from_secs(2);
const SUSPECT_MIN: usize = 16 << 10;
/// A broker that closes the connection this many times in a row while the same QoS 1/2
/// message is unacknowledged refuses that message, whatever its size (NATS closes it for a
/// topic holding `.` or a space): it is dropped rather than block everything behind it.
const STUBBORN_LOSSES: u32 = 3;
/// ... each time this soon after it was written: a broker busy electing a leader closes
/// connections seconds after what they sent, a refusal comes at once.
const STUBBORN_WINDOW: Duration = Duration::from_millis(500);
/// Received messages waiting for the Python callbacks' thread.
pub const DISPATCH_CAPACITY: usize = 10_000;

pub enum Command {
    Publish(Message),
    Configure {
        // Boxed: settings changes are rare, messages are not.
        conn: Box<Option<ConnectionConfig>>,
        queue_capacity: usize,
    },
    /// Subscribe at the broker (now, and after every reconnect) with at least this QoS.
    Subscribe {
        filter: String,
        qos: Qos,
    },
    Unsubscribe {
        filter: String,
    },
    /// Something of the printer's state waits until then (see printer.rs).
    Wake(std::time::Instant),
    /// Home Assistant's birth topic to watch (`homeassistant.birthTopic`), if any.
    Birth(Option<String>),
    /// Remote control's settings, while it is on.
    Control(Option<ControlSetup>),
    /// A remote control command ended (from the commands' thread).
    Done {
        seq: u64,
        outcome: Outcome,
    },
    /// Who we are, announced under this base topic (instance.rs); None until the plugin says.
    Instance {
        base: String,
        card: Option<Card>,
    },
}

/// What the core's thread shares with the rest of the core.
pub struct Peers {
    /// Where received messages go (the callbacks' thread).
    pub dispatch: Inbox,
    /// The subscriptions (owned by `subscriptions.rs`): what each connect subscribes.
    pub subscriptions: SharedRegistry,
    /// The printer's state: what falls due later is sent from here.
    pub printer: Arc<Printer>,
    /// What answers Home Assistant's birth message besides the state (announce.rs).
    pub discovery: Arc<Discovery>,
    pub progress: Arc<Memo>,
    /// The plugin's handler for remote control commands.
    pub control_handler: executor::Handler,
}

pub struct Handle {
    commands: mpsc::Sender<Command>,
    /// Settings and subscription changes: rare, small, and never to be dropped when the
    /// message channel is full (a lost SUBSCRIBE would never be renewed).
    control: mpsc::UnboundedSender<Command>,
    shutdown: watch::Sender<bool>,
    pub shared: Arc<Shared>,
    thread: Mutex<Option<(std_mpsc::Receiver<()>, JoinHandle<()>)>>,
    overload_logged: AtomicBool,
}

impl Handle {
    /// Starts the core's thread.
    pub fn spawn(queue_capacity: usize, peers: Peers) -> std::io::Result<Handle> {
        let (commands, rx) = mpsc::channel(COMMAND_CAPACITY);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let (done_tx, done_rx) = std_mpsc::channel();
        let executor = executor::spawn(
            peers.control_handler.clone(),
            peers.printer.clone(),
            control.clone(),
        )?;
        let runner = Runner::new(
            rx,
            control_rx,
            shutdown_rx,
            shared.clone(),
            queue_capacity,
            peers,
            executor,
        );
        let thread = std::thread::Builder::new()
            .name("mqtt-core".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    rt.block_on(runner.run())
                }));
                if outcome.is_err() {
                    error!("The MQTT core stopped after an internal error; MQTT is off until OctoPrint restarts");
                }
                let _ = done_tx.send(());
            })?;
        Ok(Handle {
            commands,
            control,
            shutdown,
            shared,
            thread: Mutex::new(Some((done_rx, thread))),
            overload_logged: AtomicBool::new(false),
        })
    }

    /// Whether a message is taken, decided once, here, and counted here when it is not: the
    /// caller's answer and the counters always agree. True: it is sent now or kept until the
    /// broker is back. False: the broker is unreachable and the sender did not allow
    /// queueing (`refused`), it is over the broker's packet limit (`rejected`), the core has
    /// stopped, or it cannot keep up (`dropped`, logged once per episode). Never waits.
    pub fn offer(&self, msg: Message) -> bool {
        self.shared.admits(&msg) && self.publish(msg)
    }

    fn publish(&self, msg: Message) -> bool {
        let cost = msg.cost();
        let waiting = &self.shared.commands_bytes;
        let before = waiting.fetch_add(cost, Relaxed);
        let outcome = if before > 0 && before + cost > COMMAND_BYTES_MAX {
            Err(mpsc::error::TrySendError::Full(()))
        } else {
            self.commands
                .try_send(Command::Publish(msg))
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => mpsc::error::TrySendError::Full(()),
                    mpsc::error::TrySendError::Closed(_) => mpsc::error::TrySendError::Closed(()),
                })
        };
        if outcome.is_err() {
            waiting.fetch_sub(cost, Relaxed);
        }
        match outcome {
            Ok(()) => {
                if self.overload_logged.load(Relaxed) {
                    self.overload_logged.store(false, Relaxed);
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                Shared::add(&self.shared.counters.dropped, 1);
                if !self.overload_logged.swap(true, Relaxed) {
                    warn!("The MQTT core cannot keep up ({COMMAND_CAPACITY} messages or {} MiB waiting): dropping new messages until it catches up", COMMAND_BYTES_MAX >> 20);
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Settings and subscription changes; never waits, never dropped while the core runs
    /// (after it stopped there is nothing left to change).
    pub fn control(&self, cmd: Command) {
        let _ = self.control.send(cmd);
    }

    /// Asks the core to disconnect cleanly and waits at most `timeout` for its thread.
    /// Call without the GIL: the core's log records need it.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let _ = self.shutdown.send(true);
        let Some((done, thread)) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
        else {
            return true;
        };
        match done.recv_timeout(timeout) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                true
            }
            // Left to finish on its own; it holds nothing the process needs.
            Err(std_mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

struct Runner {
    commands: mpsc::Receiver<Command>,
    control: mpsc::UnboundedReceiver<Command>,
    shutdown: watch::Receiver<bool>,
    shared: Arc<Shared>,
    /// False until the first settings arrive: messages are kept until we know the broker.
    configured: bool,
    conn: Option<ConnectionConfig>,
    session: Option<Session>,
    connected: bool,
    ever_connected: bool,
    /// Every message on its way: waiting, handed, unacknowledged.
    delivery: Delivery,
    /// The last large message written on this connection, in case the broker closes it.
    suspect: Option<Suspect>,
    /// The last connection ended right after a large message (see `take_culprit`).
    struck: bool,
    /// A message in flight at each of the last connection losses, and how many (see
    /// `take_stubborn`).
    stubborn: Option<(Identity, u32)>,
    /// The broker's packet limit from its CONNACK (MQTT 5), and the one learnt from it
    /// closing the connection right after a large message; the smaller one is in force.
    announced_max: Option<usize>,
    learned_max: Option<usize>,
    /// The failure last logged; the same one is not logged again.
    last_reason: Option<String>,
    /// Why the last connection that ended right after it came up was lost: the same reason
    /// again is a pattern (a broker dropping every connection at once), told once.
    quick_loss: Option<String>,
    quick_hinted: bool,
    /// The subscriptions (owned by `subscriptions.rs`): what each connect subscribes.
    subscriptions: SharedRegistry,
    /// Filters whose SUBSCRIBE is on its way, in order; then by packet id until the SUBACK.
    subscribing: VecDeque<String>,
    awaiting_suback: Vec<(u16, String)>,
    /// What this connection has subscribed, by filter, with the QoS asked for.
    subscribed: Vec<(String, Qos)>,
    dispatch: Inbox,
    dispatch_overflow_logged: bool,
    /// The printer's state (printer.rs), and when what waits there falls due.
    printer: Arc<Printer>,
    wake: Option<Instant>,
    birth: Birth,
    birth_refusal_told: bool,
    discovery: Arc<Discovery>,
    progress: Arc<Memo>,
    /// Remote control: its requests are checked here and run on the executor's thread.
    remote: Control,
    executor: Executor,
    executor_gone_told: bool,
    /// Connect failures already logged since the last connection, with several nodes (each
    /// node has its own reason; alternating reasons must not log every attempt).
    told_down: std::collections::HashSet<String>,
    control_refusal_told: bool,
    /// The filter this connection subscribed with Retain As Published (MQTT 5), if any.
    kept_retain: Option<String>,
    instances: Instances,
}

impl Runner {
    fn new(
        commands: mpsc::Receiver<Command>,
        control: mpsc::UnboundedReceiver<Command>,
        shutdown: watch::Receiver<bool>,
        shared: Arc<Shared>,
        queue_capacity: usize,
        peers: Peers,
        executor: Executor,
    ) -> Self {
        let Peers {
            dispatch,
            subscriptions,
            printer,
            discovery,
            progress,
            control_handler: _,
        } = peers;
        Runner {
            commands,
            control,
            shutdown,
            shared: shared.clone(),
            configured: false,
            conn: None,
            session: None,
            connected: false,
            ever_connected: false,
            delivery: Delivery::new(shared.clone(), queue_capacity),
            suspect: None,
            struck: false,
            stubborn: None,
            announced_max: None,
            learned_max: None,
            last_reason: None,
            quick_loss: None,
            quick_hinted: false,
            subscriptions,
            subscribing: VecDeque::new(),
            awaiting_suback: Vec::new(),
            subscribed: Vec::new(),
            dispatch,
            dispatch_overflow_logged: false,
            printer,
            wake: None,
            birth: Birth::default(),
            birth_refusal_told: false,
            discovery,
            progress,
            remote: Control::default(),
            executor,
            executor_gone_told: false,
            told_down: std::collections::HashSet::new(),
            kept_retain: None,
            control_refusal_told: false,
            instances: Instances::default(),
        }
    }

    async fn run(mut self) {
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break,
                Some(cmd) = self.control.recv() => {
                    self.command(cmd).await;
                    self.pump();
                }
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.commands_batch(cmd).await,
                    None => break,
                },
                ev = next_event(&mut self.session) => self.net_events(ev),
                _ = sleep_until(self.wake) => self.printer_due(),
            }
        }
        // What was sent before the shutdown still goes out if the broker takes it in time.
        while let Ok(cmd) = self.commands.try_recv() {
            if let Command::Publish(m) = cmd {
                self.shared.commands_bytes.fetch_sub(m.cost(), Relaxed);
                self.accept(m);
            }
        }
        // Remote control: what ended in time is answered, the rest is told OctoPrint stops.
        self.executor.stop();
        while let Ok(cmd) = self.control.try_recv() {
            if let Command::Done { seq, outcome } = cmd {
                let answers = self.remote.finish(seq, outcome);
                self.answer(answers);
            }
        }
        let answers = self.remote.abandon_all();
        self.answer(answers);
        self.close_session(Instant::now() + CLOSE_BUDGET).await;
        self.shared.set(State::Stopped, None, None);
        debug!("MQTT core stopped");
    }

    async fn commands_batch(&mut self, first: Command) {
        self.command(first).await;
        for _ in 0..BATCH {
            match self.commands.try_recv() {
                Ok(cmd) => self.command(cmd).await,
                Err(_) => break,
            }
        }
        self.pump();
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(m) => {
                self.shared.commands_bytes.fetch_sub(m.cost(), Relaxed);
                self.accept(m)
            }
            Command::Configure {
                conn,
                queue_capacity,
            } => self.configure(*conn, queue_capacity).await,
            Command::Subscribe { filter, qos } => self.subscribe(&filter, qos),
            Command::Wake(at) => self.wake_at(at),
            Command::Birth(topic) => self.watch_birth(topic),
            Command::Control(setup) => self.watch_control(setup),
            Command::Instance { base, card } => self.watch_instances(&base, card),
            Command::Done { seq, outcome } => {
                let answers = self.remote.finish(seq, outcome);
                self.answer(answers);
            }
            // Our own filters stay subscribed when the last plugin using them lets them go.
            Command::Unsubscribe { filter } if self.own_qos(&filter).is_some() => {}
            Command::Unsubscribe { filter } => self.command_unsubscribe(filter),
        }
    }

    fn command_unsubscribe(&mut self, filter: String) {
        self.subscribed.retain(|(f, _)| *f != filter);
        if let (true, Some(s)) = (self.connected, &self.session) {
            if !s.client.try_unsubscribe(&filter) {
                warn!("Could not unsubscribe from {filter:?} now; it ends with the connection");
            }
        }
    }

    /// Sends a SUBSCRIBE when connected; otherwise the next connect does. Never lower than
    /// the core's own use of the filter asks for.
    fn subscribe(&mut self, filter: &str, qos: Qos) {
        let qos = self.own_qos(filter).map_or(qos, |own| own.max(qos));
        if let (true, Some(s)) = (self.connected, &self.session) {
            // Already subscribed so on this connection: a filter registered just as it came up
            // is in what the connect subscribed, and its own command follows. A second
            // SUBSCRIBE would make the broker send the filter's retained messages again.
            // Remote control tells retained requests from live ones by the flag.
            let keep_retain = self.remote.filter() == Some(filter);
            if self
                .subscribed
                .iter()
                .any(|(f, q)| f == filter && *q == qos)
                && (!keep_retain || self.kept_retain.as_deref() == Some(filter))
            {
                return;
            }
            if s.client.try_subscribe(filter, qos, keep_retain) {
                if keep_retain {
                    self.kept_retain = Some(filter.to_owned());
                }
                self.subscribing.push_back(filter.to_owned());
                self.subscribed.retain(|(f, _)| f != filter);
                self.subscribed.push((filter.to_owned(), qos));
            } else {
                warn!("Could not subscribe to {filter:?} now (the client is busy); it is renewed at the next connect");
            }
        }
    }

    /// The filters the core watches itself, beside the plugins' subscriptions: Home
    /// Assistant's birth topic (QoS 0) and remote control's requests (QoS 1: a request is
    /// delivered again after a reconnect rather than lost).
    fn own_filters(&self) -> Vec<(String, Qos)> {
        let birth = self.birth.topic().map(|t| (t.to_owned(), Qos::AtMostOnce));
        let control = self
            .remote
            .filter()
            .map(|f| (f.to_owned(), Qos::AtLeastOnce));
        let instances = self
            .instances
            .topic()
            .map(|t| (t.to_owned(), Qos::AtLeastOnce));
        birth.into_iter().chain(control).chain(instances).collect()
    }

    fn own_qos(&self, filter: &str) -> Option<Qos> {
        self.own_filters()
            .into_iter()
            .filter(|(f, _)| f == filter)
            .map(|(_, q)| q)
            .max()
    }

    /// Subscribes one of our filters unless this connection has it at that QoS already (a
    /// plugin may have subscribed it, perhaps higher).
    fn watch(&mut self, filter: &str, qos: Qos) {
        // The request filter is subscribed by us even when a plugin has it, for MQTT 5's
        // Retain As Published (`subscribe` knows when that is done already).
        let ours = self.remote.filter() == Some(filter);
        if ours
            || !self
                .subscribed
                .iter()
                .any(|(f, q)| f == filter && *q >= qos)
        {
            self.subscribe(filter, qos);
        }
    }

    /// One of our filters is no longer ours: unsubscribed, unless a plugin's subscription
    /// uses it (then kept at the QoS the plugins ask for).
    fn unwatch(&mut self, filter: String) {
        if self.own_qos(&filter).is_some() {
            return;
        }
        let plugins = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .broker_filters()
            .into_iter()
            .find(|(f, _)| *f == filter)
            .map(|(_, q)| q);
        match plugins {
            Some(qos) => self.subscribe(&filter, qos),
            None => self.command_unsubscribe(filter),
        }
    }

    /// Watches another birth topic (or none).
    fn watch_birth(&mut self, topic: Option<String>) {
        let Some(old) = self.birth.set_topic(topic.clone()) else {
            return;
        };
        if let Some(old) = old {
            self.unwatch(old);
        }
        if let Some(topic) = topic {
            self.watch(&topic, Qos::AtMostOnce);
        }
    }

    /// Remote control's new settings: its request filter is watched while it is on.
    fn watch_control(&mut self, setup: Option<ControlSetup>) {
        let (old, new) = self.remote.configure(setup);
        if let Some(old) = old {
            self.unwatch(old);
        }
        if let Some(new) = new {
            self.watch(&new, Qos::AtLeastOnce);
        }
    }

    /// Our card on `<base>mqtt/instance` (again, when it or the base topic changed).
    fn watch_instances(&mut self, base: &str, card: Option<Card>) {
        let old = self.instances.topic().map(str::to_owned);
        let before = self.instances.card();
        self.instances.set(base, card);
        let new = self.instances.topic().map(str::to_owned);
        if old != new {
            if let Some(old) = old {
                self.unwatch(old);
            }
            if let Some(new) = &new {
                self.watch(new, Qos::AtLeastOnce);
            }
        }
        let now = self.instances.card();
        if self.connected && now != before {
            self.answer(now.into_iter().collect());
        }
    }

    /// Remote control's answers: sent, or kept for the connection (they are QoS 1).
    fn answer(&mut self, answers: Vec<crate::message::Message>) {
        for m in answers {
            if self.shared.admits(&m) {
                self.accept(m);
            }
        }
    }

    /// `connected` on the status topic, when there is one.
    fn hello(&self) -> Option<Message> {
        self.conn
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .map(|st| status_message(st, "connected"))
    }

    /// Home Assistant is back: what its entities read is published again (at most once per
    /// [`crate::announce::MIN_GAP`]).
    fn on_birth(&mut self) {
        let now = std::time::Instant::now();
        if !self.birth.answer(now) {
            debug!("Home Assistant's birth message again within 5 s: already answered");
            return;
        }
        let mut messages: Vec<Message> = self.hello().into_iter().collect();
        let configs = self.discovery.current();
        let n_configs = configs.len();
        messages.extend(configs);
        let state = self.printer.at_birth(now);
        if let Some(at) = state.wake {
            self.wake_at(at);
        }
        messages.extend(state.messages);
        messages.extend(self.progress.all());
        info!(
            "Home Assistant said online on {:?}: published the status, the printer state and {} discovery configs again",
            self.birth.topic().unwrap_or_default(),
            n_configs
        );
        for m in messages {
            if self.shared.admits(&m) {
                self.accept(m);
            }
        }
        self.pump();
    }

    /// Something of the printer's state waits until `at`: the earliest such time wakes us.
    fn wake_at(&mut self, at: std::time::Instant) {
        let at = Instant::from_std(at);
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// Sends what of the printer's state fell due, by the rule every message passes
    /// ([`Shared::admits`]).
    fn printer_due(&mut self) {
        let out = self.printer.due(self.connected, std::time::Instant::now());
        self.wake = out.wake.map(Instant::from_std);
        for m in out.messages {
            if self.shared.admits(&m) {
                self.accept(m);
            }
        }
        self.pump();
    }

    /// Takes a message [`Handle::offer`] accepted: the caller was told it goes out, so it is
    /// kept even if the connection was lost meanwhile.
    fn accept(&mut self, m: Message) {
        if self.configured && self.conn.is_none() {
            // The broker setting was cleared after the caller was told yes.
            Shared::add(&self.shared.counters.dropped, 1);
            return;
        }
        if !self.connected {
            Shared::add(&self.shared.counters.queued, 1);
        }
        self.delivery.push(m, self.connected);
    }

    /// Moves queued messages into rumqttc's buffer while it has room.
    fn pump(&mut self) {
        if self.connected {
            while let (Some(m), Some(s)) = (self.delivery.next_to_hand(), &self.session) {
                if !self.shared.fits(m) {
                    let m = self.delivery.pop_waiting().expect("next exists");
                    self.shared.refuse_too_large(&m);
                    continue;
                }
                if !s.client.try_publish(m) {
                    break;
                }
                self.delivery.hand_next();
            }
            self.delivery.end_burst();
        }
        self.delivery.update_depth();
    }

    /// Handles what the connection reported, and whatever else it has ready: one pass through
    /// the select loop per network event cost more than the event itself (QoS 1 means two
    /// events per message).
    fn net_events(&mut self, first: Option<NetEvent>) {
        self.net_event(first);
        for _ in 0..BATCH {
            let Some(s) = self.session.as_mut() else {
                break;
            };
            match s.events.try_recv() {
                Ok(ev) => self.net_event(Some(ev)),
                Err(_) => break,
            }
        }
        // Acknowledgements make room in transit: what waits goes on (also updates the depth).
        self.pump();
    }

    fn net_event(&mut self, ev: Option<NetEvent>) {
        match ev {
            None => {
                // The connection task ended without being asked to: never leave the user
                // without a connection and without a word.
                error!("The MQTT connection task ended unexpectedly; reconnecting");
                self.session = None;
                self.connected = false;
                if let Some(conn) = self.conn.clone() {
                    self.open_session(&conn);
                }
            }
            Some(NetEvent::Connected {
                max_packet,
                address,
            }) => {
                self.announced_max = max_packet.map(|m| m as usize);
                self.on_connected(address)
            }
            Some(NetEvent::Down {
                reason,
                retry_in,
                quick,
                loss,
                address,
                next,
            }) => self.on_down(reason, retry_in, quick, loss, address, next),
            Some(NetEvent::Written(pkid)) => self.written(pkid, true),
            Some(NetEvent::Acked(pkid)) => {
                if let Some(m) = self.delivery.take_unacked(pkid) {
                    drop(m);
                    Shared::add(&self.shared.counters.published, 1);
                }
            }
            Some(NetEvent::Rejected { pkid, reason }) => {
                if let Some(m) = self.delivery.take_unacked(pkid) {
                    Shared::add(&self.shared.counters.rejected, 1);
                    if self.shared.first_refusal(&m.topic) {
                        warn!(
                            "The MQTT broker refused the message on {} ({} bytes): {reason}; dropped, not sent again (not logged again for this topic)",
                            crate::status::shown(&m.topic),
                            m.packet_size()
                        );
                    }
                }
                self.pump();
            }
            Some(NetEvent::DisconnectSent) => {}
            Some(NetEvent::SubscribeSent(pkid)) => {
                if let Some(filter) = self.subscribing.pop_front() {
                    self.awaiting_suback.push((pkid, filter));
                }
            }
            Some(NetEvent::SubAck { pkid, granted }) => {
                if let Some(i) = self.awaiting_suback.iter().position(|(p, _)| *p == pkid) {
                    let (_, filter) = self.awaiting_suback.swap_remove(i);
                    if !granted && self.remote.filter() == Some(filter.as_str()) {
                        if !std::mem::replace(&mut self.control_refusal_told, true) {
                            warn!("The MQTT broker refused the subscription to remote control's requests {filter:?} (not authorised by its ACL?): no command reaches OctoPrint; allow this client to subscribe to it (docs/control.md). Not logged again");
                        }
                    } else if !granted && self.birth.topic() == Some(filter.as_str()) {
                        // Watched for every user, Home Assistant or not: said once.
                        if !std::mem::replace(&mut self.birth_refusal_told, true) {
                            warn!("The MQTT broker refused the subscription to Home Assistant's birth topic {filter:?} (not authorised by its ACL?): entities are not refreshed when Home Assistant restarts; allow it, or empty homeassistant.birthTopic. Not logged again");
                        }
                    } else if !granted {
                        warn!("The MQTT broker refused the subscription to {filter:?} (not authorised by its ACL?)");
                    }
                }
            }
            Some(NetEvent::Message(m)) => self.received(m),
        }
    }

    /// The oldest handed message reached the socket; `refill` hands the client more.
    fn written(&mut self, pkid: u16, refill: bool) {
        match self.delivery.written(pkid) {
            Some(Written::Done(m)) => {
                if m.cost() >= SUSPECT_MIN {
                    self.suspect = Some(Suspect::of(&m, pkid));
                }
                Shared::add(&self.shared.counters.published, 1);
            }
            Some(Written::Kept(m)) if m.cost() >= SUSPECT_MIN => {
                self.suspect = Some(Suspect::of(m, pkid));
            }
            _ => {}
        }
        if refill {
            self.pump();
        }
    }

    /// The message a lost connection is blamed on, taken out of what is re-sent: the large
    /// one written last (or being written) when the broker closed the connection right after
    /// it, or whatever MQTT 5's DISCONNECT refused. Counted as rejected.
    fn take_culprit(&mut self, loss: &Loss) -> Option<Culprit> {
        let refused = match loss {
            Loss::Closed => None,
            Loss::MessageRefused(why) => Some(*why),
            Loss::AckRefused(why) => {
                let pkid = self.delivery.oldest_unacked()?;
                let m = self.delivery.take_unacked(pkid)?;
                return Some(self.blame(
                    Culprit {
                        size: m.packet_size(),
                        topic: m.topic,
                    },
                    Some(why),
                ));
            }
            _ => return None,
        };
        let struck_before = std::mem::take(&mut self.struck);
        let recent = self.suspect.take().filter(|s| {
            s.at.elapsed() <= SUSPECT_WINDOW && (s.qos0 || self.delivery.is_unacked(s.pkid))
        });
        let large_mid_write = self
            .delivery
            .handed_front()
            .is_some_and(|m| m.cost() >= SUSPECT_MIN);
        if refused.is_none() && !struck_before && (recent.is_some() || large_mid_write) {
            // A 3.1.1 broker refuses a packet by closing the connection, but a broker that
            // restarts does the same: the message goes once more (it is back in the queue),
            // and only a second loss in a row right after a large message is blamed on it.
            self.struck = true;
            debug!("The connection ended right after a large message; sending it once more");
            return None;
        }
        let culprit = if let Some(s) = recent {
            if s.qos0 {
                // Counted as published when written; it was not.
                self.shared
                    .counters
                    .published
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                self.delivery.take_unacked(s.pkid);
            }
            Culprit {
                topic: s.topic,
                size: s.size,
            }
        } else {
            // Lost while being written: rumqttc never reported it written.
            let mid_write = self
                .delivery
                .handed_front()
                .is_some_and(|m| refused.is_some() || m.cost() >= SUSPECT_MIN);
            let m = if mid_write {
                self.delivery.take_handed_front()?
            } else if refused.is_some() {
                let pkid = self.delivery.newest_unacked()?;
                self.delivery.take_unacked(pkid)?
            } else {
                return None;
            };
            Culprit {
                size: m.packet_size(),
                topic: m.topic,
            }
        };
        Some(self.blame(culprit, refused))
    }

    /// The message dropped when the connection was lost right after the same QoS 1/2 message
    /// was written, unacknowledged, at each of the last [`STUBBORN_LOSSES`] losses. A broker
    /// restarting loses connections too, but acknowledges what is re-sent once it is back.
    fn take_stubborn(&mut self) -> Option<Message> {
        // Our own status messages are never re-sent, so never the same one twice.
        let own = self.own_status();
        let recent: Vec<Identity> = self
            .delivery
            .unacked_since(STUBBORN_WINDOW)
            .filter(|m| !own(m))
            .map(Message::identity)
            .collect();
        let count = match self.stubborn.take() {
            Some((id, n)) if recent.contains(&id) => (id, n + 1),
            _ => (recent.into_iter().next()?, 1),
        };
        if count.1 < STUBBORN_LOSSES {
            self.stubborn = Some(count);
            return None;
        }
        let m = self.delivery.take_unacked_message(&count.0)?;
        Shared::add(&self.shared.counters.rejected, 1);
        self.shared.first_refusal(&m.topic);
        Some(m)
    }

    /// Counts the culprit as rejected; one refused for its size lowers the learnt limit.
    fn blame(&mut self, culprit: Culprit, refused: Option<&str>) -> Culprit {
        Shared::add(&self.shared.counters.rejected, 1);
        let too_large = refused.is_none_or(|why| why.contains("large"));
        if too_large && culprit.size > 0 {
            let max = culprit.size - 1;
            self.learned_max = Some(self.learned_max.map_or(max, |m| m.min(max)));
            self.apply_packet_limit();
        }
        culprit
    }

    fn apply_packet_limit(&self) {
        let limit = match (self.announced_max, self.learned_max) {
            (Some(a), Some(l)) => Some(a.min(l)),
            (a, l) => a.or(l),
        };
        self.shared.set_max_packet(limit);
    }

    fn received(&mut self, m: Incoming) {
        Shared::add(&self.shared.counters.received, 1);
        if self.birth.is_birth(&m) {
            self.on_birth();
        }
        if let Seen::Other(other) = self.instances.take(&m) {
            warn!(
                "Another OctoPrint publishes under the same base topic: {:?} (instance {}); both write the same topics and each overwrites the other's state. Give each printer a base topic of its own (Settings › MQTT › Use topics of their own for this printer)",
                other.host, other.id
            );
            self.shared.add_other(other);
            // Announced again, live, so that the other one learns of us too.
            let card = self.instances.card();
            self.answer(card.into_iter().collect());
        }
        let copies = self
            .subscribed
            .iter()
            .filter(|(f, _)| crate::topic::matches(f, &m.topic))
            .count();
        match self.remote.take(&m, copies) {
            Taken::NotOurs | Taken::Ignored => {}
            Taken::Answer(answers) => self.answer(answers),
            Taken::Run(job) => {
                if let Err(not_taken) = self.executor.try_run(job) {
                    let (seq, why) = match not_taken {
                        executor::NotTaken::Busy(job) => (
                            job.seq,
                            format!(
                                "busy: {} commands are waiting; try again later",
                                executor::CAPACITY
                            ),
                        ),
                        executor::NotTaken::Gone(job) => {
                            if !std::mem::replace(&mut self.executor_gone_told, true) {
                                error!("Remote control's thread has stopped after an internal error: no command runs until OctoPrint restarts");
                            }
                            (
                                job.seq,
                                "remote control has stopped after an internal error; restart OctoPrint".into(),
                            )
                        }
                    };
                    let answers = self.remote.finish(seq, Outcome::Retry(why));
                    self.answer(answers);
                }
            }
        }
        match self.dispatch.try_send(m) {
            Ok(()) => self.dispatch_overflow_logged = false,
            Err(m) => {
                Shared::add(&self.shared.counters.dispatch_dropped, 1);
                if !std::mem::replace(&mut self.dispatch_overflow_logged, true) {
                    warn!(
                        "Subscription callbacks are not keeping up ({DISPATCH_CAPACITY} messages or {} MiB waiting): dropping received messages, starting with one on {:?}",
                        crate::dispatch::BYTES_MAX >> 20,
                        m.topic
                    );
                }
            }
        }
    }

    /// `address`: the node connected to (one of `broker.url` and `broker.failover`).
    fn on_connected(&mut self, address: String) {
        self.apply_packet_limit();
        // A copy: the drop report below needs `self` while the connection is named.
        let Some(conn) = self.conn.clone() else {
            return;
        };
        self.connected = true;
        if self.ever_connected {
            Shared::add(&self.shared.counters.reconnects, 1);
        }
        self.ever_connected = true;
        self.told_down.clear();
        match self.last_reason.take() {
            // Told once already: the broker drops us right after every connect.
            Some(_) if self.quick_loss.is_some() => {
                debug!("Reconnected to the MQTT broker at {address}")
            }
            Some(_) => info!("Reconnected to the MQTT broker at {address}"),
            None => info!(
                "Connected to the MQTT broker at {} as client {:?}",
                address, conn.client_id
            ),
        }
        self.delivery.end_overflow();
        self.shared.set(State::Connected, Some(address), None);
        let hello = self.hello();
        self.apply_queue_bound();
        // Subscriptions first: the broker handles packets in order, so a callback watching the
        // status topic sees the `connected` that follows.
        self.subscribing.clear();
        self.subscribed.clear();
        self.kept_retain = None;
        self.awaiting_suback.clear();
        let filters = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .broker_filters();
        for (filter, qos) in filters {
            self.subscribe(&filter, qos);
        }
        for (filter, qos) in self.own_filters() {
            self.watch(&filter, qos);
        }
        // Then the printer's state (not kept while offline: this one is the current one), and
        // the discovery configs in force (this may be another broker than the last one).
        let state = self.printer.at_connect(std::time::Instant::now());
        if let Some(at) = state.wake {
            self.wake_at(at);
        }
        let configs = self.discovery.current();
        for m in configs.into_iter().rev().chain(state.messages) {
            self.delivery.push_front(m, true);
        }
        if let Some(card) = self.instances.card() {
            self.delivery.push_front(card, true);
        }
        if let Some(hello) = hello {
            self.delivery.push_front(hello, true);
        }
        self.pump();
    }

    /// `quick`: the connection that ended had only just come up.
    fn on_down(
        &mut self,
        reason: String,
        retry_in: Duration,
        quick: bool,
        loss: Loss,
        address: String,
        next: Option<String>,
    ) {
        if self.conn.is_none() {
            return;
        }
        // Another node next, at once: said so instead of a delay.
        let then = match &next {
            Some(n) if retry_in.is_zero() => format!("trying {n} now"),
            _ => "reconnecting".to_string(),
        };
        let was_connected = std::mem::replace(&mut self.connected, false);
        let culprit = if was_connected {
            self.take_culprit(&loss)
        } else {
            None
        };
        if let Loss::Silent { unconfirmed } = loss.clone() {
            if unconfirmed > 0 {
                let c = &self.shared.counters;
                c.published
                    .fetch_sub(unconfirmed, std::sync::atomic::Ordering::Relaxed);
                Shared::add(&c.dropped, unconfirmed);
                warn!("{unconfirmed} QoS 0 messages written after the MQTT broker last answered are probably lost (QoS 0 is never sent again; use QoS 1 for what must arrive)");
            }
        }
        let stubborn = match (&culprit, &loss) {
            (None, Loss::Closed) if was_connected => self.take_stubborn(),
            _ => None,
        };
        self.suspect = None;
        self.delivery.end_connected_overflow();
        self.requeue_in_flight();
        self.apply_queue_bound();
        // The same quick loss twice in a row: the broker drops this client at once.
        let blamed = culprit.is_some() || stubborn.is_some();
        let repeated = quick && !blamed && self.quick_loss.as_deref() == Some(reason.as_str());
        if let Some(m) = &stubborn {
            warn!(
                "The MQTT broker at {address} closed the connection {STUBBORN_LOSSES} times in a row while the {}-byte QoS {} message on {} waited for its acknowledgement: it refuses that message (NATS refuses topics with '.' or a space; an ACL may refuse it too). That message was dropped and is not sent again; reconnecting",
                m.packet_size(),
                m.qos as u8,
                crate::status::shown(&m.topic)
            );
        } else if let Some(c) = &culprit {
            // Told here: a refusal of the next one on this topic is not news.
            self.shared.first_refusal(&c.topic);
            let limit = match (self.shared.max_packet(), &loss) {
                (Some(max), Loss::Closed | Loss::MessageRefused(_) | Loss::AckRefused(_)) => format!("; messages over {max} bytes are refused from now on, until the settings change"),
                _ => String::new(),
            };
            let why = match &loss {
                Loss::MessageRefused(why) | Loss::AckRefused(why) => {
                    format!("the broker refused it: {why}")
                }
                _ => "probably larger than the broker allows (Mosquitto: max_packet_size or message_size_limit; AWS IoT: 128 KiB)".into(),
            };
            warn!(
                "Lost the connection to the MQTT broker at {address} ({reason}) right after sending the {}-byte message on {}: {why}. That message was dropped and is not sent again{limit}; reconnecting",
                c.size,
                crate::status::shown(&c.topic)
            );
        } else if repeated && self.quick_hinted {
            debug!("Lost the connection to {address} again right after connecting: {reason}");
        } else if repeated {
            self.quick_hinted = true;
            warn!("The MQTT broker at {address} keeps dropping this client right after it connects ({reason}): is another client using the same client id, or does its ACL refuse it? Reconnecting with growing delays; not logged again while it does");
        } else if was_connected {
            warn!("Lost the connection to the MQTT broker at {address}: {reason}; {then}, and keeping messages meanwhile");
        } else if next.is_some() && retry_in.is_zero() {
            if self.told_down.insert(reason.clone()) {
                warn!("Cannot connect to the MQTT broker at {address}: {reason}; {then}. Not logged again until a connection succeeds");
            } else {
                debug!("Still cannot connect to {address}: {reason}; {then}");
            }
        } else if self.last_reason.as_deref() != Some(reason.as_str())
            && !self.told_down.contains(&reason)
        {
            warn!(
                "Cannot connect to the MQTT broker at {address}: {reason}; retrying in {} s, then less and less often (up to every 2 minutes); not logged again until the reason changes",
                retry_in.as_secs()
            );
        } else {
            debug!("Still cannot connect to {address}: {reason}");
        }
        if quick && !blamed {
            if !repeated {
                self.quick_hinted = false;
            }
            self.quick_loss = Some(reason.clone());
        } else if was_connected {
            self.quick_loss = None;
            self.quick_hinted = false;
        }
        self.shared
            .set(State::BackingOff, Some(address), Some(reason.clone()));
        self.last_reason = Some(reason);
    }

    /// Messages the client had not finished with go back in front of the queue, oldest first.
    /// Status messages are not kept: they describe a connection that no longer exists.
    fn requeue_in_flight(&mut self) {
        let own = self.own_status();
        self.delivery.requeue_in_flight(|m| !own(m), self.connected);
    }

    /// Whether a message is one of our own status messages (`connected`, `disconnected`):
    /// they describe one connection, so they are never sent again.
    fn own_status(&self) -> impl Fn(&Message) -> bool {
        let status_topic = self
            .conn
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .map(|s| s.topic.clone());
        move |m| Some(&m.topic) == status_topic.as_ref() && is_status_payload(&m.payload)
    }

    fn apply_queue_bound(&mut self) {
        self.delivery.set_bound(None, self.connected);
    }

    async fn configure(&mut self, conn: Option<ConnectionConfig>, queue_capacity: usize) {
        self.delivery
            .set_bound(Some(queue_capacity), self.connected);
        if self.configured && conn == self.conn {
            return;
        }
        let first = !self.configured;
        self.configured = true;
        if self.session.is_some() {
            info!("MQTT connection settings changed: reconnecting");
            self.close_session(Instant::now() + CLOSE_BUDGET).await;
        }
        self.conn = conn;
        self.last_reason = None;
        // Another broker, or the same one with other settings: its limits are learnt anew.
        self.announced_max = None;
        self.learned_max = None;
        self.struck = false;
        self.stubborn = None;
        self.shared.forget_refusals();
        match self.conn.clone() {
            None => {
                let waiting = self.delivery.clear_waiting();
                if waiting > 0 {
                    Shared::add(&self.shared.counters.refused, waiting as u64);
                }
                info!("No MQTT broker is configured (plugins.mqtt.broker.url is empty): the plugin stays idle until one is set in the settings");
                self.shared.set(State::Idle, None, None);
            }
            Some(conn) => {
                if let Some(note) = &conn.protocol_note {
                    warn!("{note}");
                }
                if first || self.session.is_none() {
                    debug!("Configured {conn:?}");
                }
                self.open_session(&conn);
            }
        }
    }

    fn open_session(&mut self, conn: &ConnectionConfig) {
        let mut address = conn.address();
        if !conn.failover.is_empty() {
            let others: Vec<String> = conn
                .failover
                .iter()
                .map(|(h, p)| crate::config::address_text(h, *p))
                .collect();
            address = format!("{address} (then {})", others.join(", "));
        }
        info!(
            "Connecting to the MQTT broker at {address} with MQTT {}{}{}",
            match conn.protocol {
                Protocol::V311 => "3.1.1",
                Protocol::V5 => "5",
            },
            if conn.tls.is_some() { " over TLS" } else { "" },
            match &conn.username {
                Some(u) => format!(" as user {u:?}"),
                None => String::new(),
            }
        );
        match link::start(conn) {
            Ok(s) => {
                self.session = Some(s);
                self.shared.set(State::Connecting, Some(address), None);
            }
            Err(e) => {
                error!("Cannot connect to the MQTT broker at {address}: {e}; fix the settings and save them to try again");
                self.shared
                    .set(State::Idle, Some(address), Some(e.to_string()));
            }
        }
    }

    /// Publishes `disconnected` and sends DISCONNECT when connected, then drops the
    /// connection; never takes longer than `deadline`. Waiting messages go out first while
    /// time allows (CLOSE_TAIL is kept for the goodbye); what is left stays queued.
    async fn close_session(&mut self, deadline: Instant) {
        if self.session.is_none() {
            return;
        }
        if self.connected {
            let mut bye = self
                .conn
                .as_ref()
                .and_then(|c| c.status.as_ref())
                .map(|st| status_message(st, "disconnected"));
            let tail_starts = deadline.checked_sub(CLOSE_TAIL).unwrap_or(deadline);
            // The status message (if any) is in the client's hands: DISCONNECT may follow.
            let mut bye_handed = false;
            let mut disconnect_requested = false;
            let mut disconnect_sent = false;
            loop {
                if !bye_handed {
                    if self.delivery.waiting_is_empty() || Instant::now() >= tail_starts {
                        bye_handed = match bye.take() {
                            None => true,
                            Some(m) => match &self.session {
                                Some(s) if s.client.try_publish(&m) => {
                                    self.delivery.hand(m);
                                    true
                                }
                                // The client's buffer is full: retry after the next write.
                                _ => {
                                    bye = Some(m);
                                    false
                                }
                            },
                        };
                    } else {
                        self.pump();
                    }
                }
                if bye_handed && !disconnect_requested {
                    disconnect_requested = self
                        .session
                        .as_ref()
                        .is_some_and(|s| s.client.try_disconnect());
                }
                let wake = if bye_handed || Instant::now() >= tail_starts {
                    deadline
                } else {
                    tail_starts
                };
                let ev = match self.session.as_mut() {
                    Some(s) => timeout_at(wake, s.events.recv()).await,
                    None => break,
                };
                match ev {
                    // The link reads what the broker still sends until it closes the
                    // connection (see link::drain); its end closes the channel.
                    Ok(Some(NetEvent::DisconnectSent)) => disconnect_sent = true,
                    Ok(Some(NetEvent::Down { reason, .. })) => {
                        debug!("Connection ended while closing: {reason}");
                        break;
                    }
                    Ok(Some(NetEvent::Written(pkid))) => self.written(pkid, !bye_handed),
                    Ok(Some(other)) => self.net_event(Some(other)),
                    Ok(None) => break,
                    Err(_) if wake < deadline => {}
                    Err(_) if disconnect_sent => break,
                    Err(_) => {
                        warn!("The MQTT broker did not take the disconnect in time; closing the connection anyway");
                        break;
                    }
                }
            }
        }
        self.session = None;
        self.connected = false;
        self.requeue_in_flight();
        self.apply_queue_bound();
    }
}

/// A large message just written (see [`SUSPECT_WINDOW`]).
struct Suspect {
    at: Instant,
    pkid: u16,
    qos0: bool,
    topic: String,
    size: usize,
}

impl Suspect {
    fn of(m: &Message, pkid: u16) -> Suspect {
        Suspect {
            at: Instant::now(),
            pkid,
            qos0: m.qos == Qos::AtMostOnce,
            topic: m.topic.clone(),
            size: m.packet_size(),
        }
    }
}

/// The message a lost connection was blamed on.
struct Culprit {
    topic: String,
    size: usize,
}

/// Never, when nothing waits.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_event(session: &mut Option<Session>) -> Option<NetEvent> {
    match session {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

fn status_message(st: &StatusTopic, text: &str) -> Message {
    Message {
        topic: st.topic.clone(),
        payload: bytes::Bytes::copy_from_slice(text.as_bytes()),
        qos: Qos::AtLeastOnce,
        retain: st.retain,
        queue_offline: true,
        expiry: None,
        correlation: None,
    }
}

fn is_status_payload(p: &[u8]) -> bool {
    p == b"connected" || p == b"disconnected"
}
