//! The alarm service: one task owns the [`Alarm`] and is the only one to change it, so every
//! input is a step in one order. Inputs: commands from the MQTT command topic (through the
//! bus, with the publisher's identity) and from [`AlarmHandle::command`] (the REST API, the
//! keypad), the configured sensors' MQTT topics, the deadline timer (it sleeps until
//! [`Alarm::next_deadline`]), Home Assistant's birth message, and [`AlarmHandle::reload`]
//! after the settings or sensors changed in the store.
//!
//! Each step that changed something is persisted before it is published: the new snapshot
//! and its events in one store job ([`Store::record_alarm_step`]); then the state (retained),
//! the attributes (retained), refusals on the error topic and duress uses on the duress
//! topic. Discovery, availability and state are (re)published at start, after a reload and
//! whenever Home Assistant announces itself `online`; `offline` at [`AlarmService::stop`].
//!
//! When the MQTT link to an external broker runs (ADR 0015), everything published goes there
//! too, under that broker's topics ([`Topics::external`]: `porchlight/<node>/alarm/…`, with the
//! link's own status topic as availability, `offline` being its will), and commands, Home
//! Assistant's birth and the sensors' topics are taken from there as well (commands as
//! `via: home_assistant`, the external broker's ACL being their gate). After each CONNACK of the link, discovery, state
//! and attributes are published there again (clean sessions).
//!
//! PINs are verified before the step, outside the task ([`PinVerifier`]: argon2 takes
//! milliseconds, and a sensor or a deadline must not wait behind it): MQTT commands by one
//! task of their own, in arrival order; handle commands by the caller. The machine gets the
//! outcome as an [`Authorization`]; a refused code never reaches it.
//!
//! Must not: know SQL (the store does), shape API JSON (`http/` does), decide a rule (the
//! domain does).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use porchlight_broker::link::LinkState;
use porchlight_broker::{Ack, Bus, Bytes, Delivery, Inbound, Origin, Origins};
use porchlight_domain::Role;
use porchlight_domain::alarm::topics::Topics;
use porchlight_domain::alarm::{
    Action, Alarm, AlarmStatus, Authorization, CodeUse, Command, Effect, Pin, Sensor, SensorId,
    TransitionReason, Verdict, Via, parse_command, topics,
};
use porchlight_store::{AlarmEventKind, NewAlarmEvent, Store};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::ha;
use crate::mqtt_link::LinkConn;

/// Where the alarm shows up in Home Assistant, and how long its events are kept.
#[derive(Debug, Clone)]
pub struct AlarmConfig {
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// The discovery node id: `<prefix>/alarm_control_panel/<node_id>/config`, entity
    /// `alarm_control_panel.<node_id>`.
    pub node_id: String,
    /// The Home Assistant device's name.
    pub device_name: String,
    /// Events older than this are deleted.
    pub event_retention: Duration,
    /// How often the retention purge runs (first run at start).
    pub purge_every: Duration,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            discovery_prefix: "homeassistant".into(),
            node_id: "porchlight".into(),
            device_name: "Porchlight".into(),
            event_retention: Duration::from_secs(365 * 24 * 3600),
            purge_every: Duration::from_secs(24 * 3600),
        }
    }
}

/// A verified code's holder and permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHolder {
    pub username: String,
    pub may_arm: bool,
    pub may_disarm: bool,
    /// A duress code: acts as a normal one, and silently calls for help.
    pub duress: bool,
}

/// Why a PIN was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRefusal {
    /// Stable short name: `wrong_code`, `locked_out`, `code_disabled`, `outside_validity`,
    /// `bad_code`.
    pub reason: &'static str,
    /// For the user (never the code).
    pub message: String,
    /// Locked out: try again after this long.
    pub retry_after: Option<Duration>,
}

impl PinRefusal {
    pub fn wrong() -> PinRefusal {
        PinRefusal {
            reason: "wrong_code",
            message: "wrong code".into(),
            retry_after: None,
        }
    }
}

/// The port the PIN codes plug into: who a PIN belongs to, with the verifier's own rate
/// limiting and lockout. Called outside the alarm's task.
#[async_trait]
pub trait PinVerifier: Send + Sync {
    async fn verify(
        &self,
        pin: &Pin,
        via: Via,
        peer: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<CodeHolder, PinRefusal>;
}

/// A command through [`AlarmHandle::command`].
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub action: Action,
    /// Arm even with open sensors (bypassing them until disarm).
    pub force: bool,
    pub pin: Option<Pin>,
    pub via: Via,
    /// The signed-in user, shown as `changed_by` when no code names someone.
    pub user: Option<String>,
    /// The caller's address, for the verifier's rate limiting.
    pub peer: Option<IpAddr>,
}

/// A refused command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable short name (the machine's `Rejection::reason`, the verifier's, or
    /// `not_permitted`).
    pub reason: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// `open_sensors`: the sensors that block arming (empty for other reasons).
    pub sensors: Vec<SensorId>,
}

/// What became of a command, with the status after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandReply {
    Accepted(AlarmStatus),
    /// The same command again within the de-duplication window: nothing done.
    Duplicate(AlarmStatus),
    Refused(Refusal, AlarmStatus),
}

/// A configured sensor with its last known state (`None`: no report yet).
#[derive(Debug, Clone, PartialEq)]
pub struct SensorView {
    pub sensor: Sensor,
    pub active: Option<bool>,
}

/// Why the service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("the alarm service has stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] porchlight_store::Error),
}

/// The outcome of a code check, handed to the task with the command.
#[derive(Debug)]
enum CodeCheck {
    None,
    Valid {
        duress: bool,
    },
    /// A valid code without the permission for this action.
    NotPermitted {
        duress: bool,
    },
    Refused(PinRefusal),
}

#[derive(Debug)]
struct Checked {
    action: Action,
    force: bool,
    via: Via,
    who: Option<String>,
    code: CodeCheck,
}

/// The brokers the alarm's Home Assistant entity lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    /// The embedded broker, through the bus.
    Embedded,
    /// The external broker, through the MQTT link (when it runs).
    External,
}

enum Request {
    Command {
        checked: Checked,
        reply: Option<oneshot::Sender<CommandReply>>,
        /// A client's QoS 1/2 command is acknowledged once its step is persisted.
        ack: Option<Ack>,
    },
    /// An MQTT command payload that could not be parsed.
    BadPayload {
        reason: &'static str,
        message: String,
        via: Via,
        who: Option<String>,
        ack: Option<Ack>,
    },
    /// Publish discovery, availability, state and attributes again on one broker.
    Announce(Broker),
    /// The MQTT link was started, replaced or stopped: sensor topics move to the new one.
    LinkChanged,
    Status(oneshot::Sender<AlarmStatus>),
    Sensors(oneshot::Sender<Vec<SensorView>>),
    Reload(oneshot::Sender<Result<(), AlarmError>>),
}

/// The REST API's and the keypad's way to the alarm. Cheap to clone.
#[derive(Clone)]
pub struct AlarmHandle {
    /// Requests into the alarm's task (bounded: callers wait when it is busy).
    tx: mpsc::Sender<Request>,
    /// The status after the latest step, for live views.
    status: watch::Receiver<AlarmStatus>,
    verifier: Arc<dyn PinVerifier>,
}

impl std::fmt::Debug for AlarmHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmHandle").finish_non_exhaustive()
    }
}

impl AlarmHandle {
    /// Verifies the PIN (if any), then arms, disarms or triggers; answers after the step is
    /// persisted and published.
    pub async fn command(&self, request: CommandRequest) -> Result<CommandReply, AlarmError> {
        let checked = check(
            self.verifier.as_ref(),
            request.action,
            request.force,
            request.pin.as_ref(),
            request.via,
            request.user,
            request.peer,
        )
        .await;
        let (reply, rx) = oneshot::channel();
        self.send(Request::Command {
            checked,
            reply: Some(reply),
            ack: None,
        })
        .await?;
        rx.await.map_err(|_| AlarmError::Stopped)
    }

    /// The status now (due deadlines resolved first).
    pub async fn status(&self) -> Result<AlarmStatus, AlarmError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Status(tx)).await?;
        rx.await.map_err(|_| AlarmError::Stopped)
    }

    /// The configured sensors with their live state.
    pub async fn sensors(&self) -> Result<Vec<SensorView>, AlarmError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Sensors(tx)).await?;
        rx.await.map_err(|_| AlarmError::Stopped)
    }

    /// Re-reads settings and sensors from the store (after the API changed them): the
    /// machine is reconfigured, sensor topics re-subscribed, discovery re-published.
    pub async fn reload(&self) -> Result<(), AlarmError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Reload(tx)).await?;
        rx.await.map_err(|_| AlarmError::Stopped)?
    }

    /// The status after each step that changed something (the latest one at first).
    pub fn subscribe(&self) -> watch::Receiver<AlarmStatus> {
        self.status.clone()
    }

    async fn send(&self, request: Request) -> Result<(), AlarmError> {
        self.tx.send(request).await.map_err(|_| AlarmError::Stopped)
    }
}

/// A code check: `None` when no PIN came; the verifier's answer and the holder's permission
/// for `action` otherwise.
async fn check(
    verifier: &dyn PinVerifier,
    action: Action,
    force: bool,
    pin: Option<&Pin>,
    via: Via,
    user: Option<String>,
    peer: Option<IpAddr>,
) -> Checked {
    let (who, code) = match pin {
        None => (user, CodeCheck::None),
        Some(pin) => match verifier.verify(pin, via, peer, SystemTime::now()).await {
            Err(refusal) => (user, CodeCheck::Refused(refusal)),
            Ok(holder) => {
                let permitted = match action {
                    Action::Disarm => holder.may_disarm,
                    Action::Trigger => true,
                    _ => holder.may_arm,
                };
                let code = if permitted {
                    CodeCheck::Valid {
                        duress: holder.duress,
                    }
                } else {
                    CodeCheck::NotPermitted {
                        duress: holder.duress,
                    }
                };
                (Some(holder.username), code)
            }
        },
    };
    Checked {
        action,
        force,
        via,
        who,
        code,
    }
}

/// The running alarm; stop it with [`AlarmService::stop`] before the broker.
pub struct AlarmService {
    handle: AlarmHandle,
    /// Tells the task to publish `offline` and end.
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// Reads the command topic and verifies PINs, in order; aborted at stop.
    commands: Option<JoinHandle<()>>,
    /// Follows the MQTT link: its command topic and Home Assistant's birth there.
    link_reader: JoinHandle<()>,
    /// The event retention purge; aborted at stop.
    purge: JoinHandle<()>,
}

impl std::fmt::Debug for AlarmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmService").finish_non_exhaustive()
    }
}

impl AlarmService {
    /// Loads the alarm from the store (a fresh install: disarmed, defaults, no sensors),
    /// resolves what fell due while the process was down, attaches to the bus and publishes
    /// discovery, availability and state. Call before the broker serves clients.
    pub async fn start(
        store: Store,
        bus: Option<Arc<dyn Bus>>,
        verifier: Arc<dyn PinVerifier>,
        config: AlarmConfig,
        link: watch::Receiver<Option<LinkConn>>,
    ) -> Result<AlarmService, AlarmError> {
        let record = store.alarm_record().await?;
        let now = SystemTime::now();
        if let Some(e) = &record.snapshot_error {
            tracing::error!(error = %e, "alarm: the stored state is unreadable; starting disarmed");
        }
        let (alarm, effects) = match record.snapshot {
            Some(snapshot) => Alarm::restore(snapshot, record.settings, record.sensors, now),
            None => (Alarm::new(record.settings, record.sensors), Vec::new()),
        };
        tracing::info!(state = %alarm.state(), "alarm loaded");
        let (status_tx, status_rx) = watch::channel(alarm.status(now));
        let (tx, rx) = mpsc::channel(64);
        let handle = AlarmHandle {
            tx: tx.clone(),
            status: status_rx,
            verifier: verifier.clone(),
        };
        let (sensor_tx, sensor_rx) = mpsc::channel(256);
        let ha_status = bus.as_ref().map(|b| b.consume(topics::HA_STATUS, 16));
        let commands = bus.as_ref().map(|b| {
            // Acked: a QoS 1 command's PUBACK leaves once its step is persisted, so an arm
            // that Home Assistant saw acknowledged survives a crash.
            let rx = b.consume_acked(topics::COMMAND, 64, Origins::CLIENTS);
            tokio::spawn(read_commands(rx, verifier.clone(), tx.clone()))
        });
        let external = Topics::external(&config.node_id);
        let link_reader = tokio::spawn(read_link(
            link.clone(),
            external.clone(),
            verifier.clone(),
            tx.clone(),
        ));
        let mut task = Task {
            alarm,
            store: store.clone(),
            bus,
            config: config.clone(),
            status: status_tx,
            sensor_tx,
            sensor_topics: HashMap::new(),
            link_sensor_topics: HashMap::new(),
            last_event: None,
            link,
            embedded: Topics::embedded(),
            external,
        };
        task.subscribe_sensors();
        task.persist_and_publish(effects, Vec::new(), true, now)
            .await;
        task.announce(Broker::Embedded, now).await;
        task.announce(Broker::External, now).await;
        let (stop, stop_rx) = oneshot::channel();
        let purge = tokio::spawn(purge_events(store, config));
        Ok(AlarmService {
            handle,
            stop,
            task: tokio::spawn(task.run(rx, sensor_rx, ha_status, stop_rx)),
            commands,
            link_reader,
            purge,
        })
    }

    pub fn handle(&self) -> AlarmHandle {
        self.handle.clone()
    }

    /// Publishes `offline` (retained) and ends. Call before the broker shuts down.
    pub async fn stop(self) {
        if let Some(commands) = self.commands {
            commands.abort();
        }
        self.link_reader.abort();
        self.purge.abort();
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the alarm task failed");
        }
    }
}

/// The command topic: parse, verify the PIN, hand to the task, one message at a time (so
/// commands keep their order).
async fn read_commands(
    mut rx: mpsc::Receiver<Delivery>,
    verifier: Arc<dyn PinVerifier>,
    tx: mpsc::Sender<Request>,
) {
    while let Some(Delivery { inbound, ack }) = rx.recv().await {
        if inbound.origin != Origin::Client {
            // A will message is not a command.
            ack.commit();
            continue;
        }
        let (via, who) = match &inbound.identity {
            Some(id) if id.role == Role::HomeAssistant => {
                (Via::HomeAssistant, Some(id.username.clone()))
            }
            Some(id) => (Via::Api, Some(id.username.clone())),
            None => (Via::Api, None),
        };
        let request =
            command_request(&inbound.payload, via, who, verifier.as_ref(), Some(ack)).await;
        if tx.send(request).await.is_err() {
            return;
        }
    }
}

/// One command payload as a request to the task: parsed, its PIN verified.
async fn command_request(
    payload: &[u8],
    via: Via,
    who: Option<String>,
    verifier: &dyn PinVerifier,
    ack: Option<Ack>,
) -> Request {
    match parse_command(payload) {
        Err(e) => Request::BadPayload {
            reason: e.reason(),
            message: e.to_string(),
            via,
            who,
            ack,
        },
        Ok(payload) => Request::Command {
            checked: check(
                verifier,
                payload.action,
                false,
                payload.code.as_ref(),
                via,
                who,
                None,
            )
            .await,
            reply: None,
            ack,
        },
    }
}

/// Follows the MQTT link (replaced on each settings change, `None` while off): takes commands
/// and Home Assistant's birth from the external broker, and asks for the entity to be
/// announced there after each CONNACK. Ends when the alarm or the link service is gone.
async fn read_link(
    mut links: watch::Receiver<Option<LinkConn>>,
    topics: Topics,
    verifier: Arc<dyn PinVerifier>,
    tx: mpsc::Sender<Request>,
) {
    loop {
        let conn = links.borrow_and_update().clone();
        if tx.send(Request::LinkChanged).await.is_err() {
            return;
        }
        let go_on = match conn {
            None => links.changed().await.is_ok(),
            Some(conn) => serve_link(&mut links, conn, &topics, verifier.as_ref(), &tx).await,
        };
        if !go_on {
            return;
        }
    }
}

/// One link, until it is replaced (`true`) or the alarm or the link service is gone (`false`).
async fn serve_link(
    links: &mut watch::Receiver<Option<LinkConn>>,
    conn: LinkConn,
    topics: &Topics,
    verifier: &dyn PinVerifier,
    tx: &mpsc::Sender<Request>,
) -> bool {
    let subscriptions = (
        conn.handle.subscribe(&topics.command),
        conn.handle.subscribe(topics::HA_STATUS),
    );
    let (Ok(mut commands), Ok(mut births)) = subscriptions else {
        tracing::warn!("alarm: could not subscribe through the MQTT link");
        return links.changed().await.is_ok();
    };
    let mut status = conn.status;
    // The CONNACK announced last (its time): a reconnect is a new one, even when the status
    // went connecting → connected between two looks.
    let mut announced: Option<SystemTime> = None;
    status.mark_changed();
    loop {
        let request = tokio::select! {
            changed = links.changed() => return changed.is_ok(),
            changed = status.changed() => {
                if changed.is_err() {
                    // The link ended; its replacement (or `None`) follows on `links`.
                    return links.changed().await.is_ok();
                }
                let (state, since) = {
                    let s = status.borrow_and_update();
                    (s.state, s.since)
                };
                if state != LinkState::Connected || announced == Some(since) {
                    continue;
                }
                announced = Some(since);
                Request::Announce(Broker::External)
            },
            Some(message) = commands.recv() => {
                command_request(&message.payload, Via::HomeAssistant, None, verifier, None).await
            },
            Some(message) = births.recv() => {
                if !message.payload.trim_ascii().eq_ignore_ascii_case(b"online") {
                    continue;
                }
                tracing::info!("alarm: Home Assistant (external broker) is online; re-publishing");
                Request::Announce(Broker::External)
            },
        };
        if tx.send(request).await.is_err() {
            return false;
        }
    }
}

async fn purge_events(store: Store, config: AlarmConfig) {
    loop {
        let cutoff = SystemTime::now()
            .checked_sub(config.event_retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match store.purge_alarm_events_older_than(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "alarm: old events purged"),
            Err(e) => tracing::warn!(error = %e, "alarm: purging old events failed"),
        }
        tokio::time::sleep(config.purge_every.max(Duration::from_secs(1))).await;
    }
}

/// The alarm's task: owns the machine.
struct Task {
    alarm: Alarm,
    store: Store,
    /// `None` when the broker is disabled: the alarm still runs for the API.
    bus: Option<Arc<dyn Bus>>,
    config: AlarmConfig,
    /// The status after each step, for [`AlarmHandle::subscribe`].
    status: watch::Sender<AlarmStatus>,
    /// Where the sensor topics' forwarders send.
    sensor_tx: mpsc::Sender<Inbound>,
    /// One forwarder per subscribed sensor topic, aborted when no sensor uses it any more.
    sensor_topics: HashMap<String, JoinHandle<()>>,
    /// The same through the MQTT link (sensors on the external broker, e.g. Zigbee2MQTT's).
    link_sensor_topics: HashMap<String, JoinHandle<()>>,
    /// For the attributes' `last_event`.
    last_event: Option<NewAlarmEvent>,
    /// The MQTT link to an external broker, while it runs.
    link: watch::Receiver<Option<LinkConn>>,
    /// The topics on the embedded broker and on the external one.
    embedded: Topics,
    external: Topics,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut sensor_rx: mpsc::Receiver<Inbound>,
        mut ha_status: Option<mpsc::Receiver<Inbound>>,
        mut stop: oneshot::Receiver<()>,
    ) {
        loop {
            let sleep = self.alarm.next_deadline().map(|deadline| {
                deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                _ = &mut stop => break,
                request = rx.recv() => match request {
                    Some(request) => self.on_request(request).await,
                    None => break,
                },
                Some(inbound) = sensor_rx.recv() => self.on_sensor(&inbound).await,
                Some(inbound) = recv(&mut ha_status) => {
                    let birth = inbound.origin != Origin::App
                        && inbound.payload.trim_ascii().eq_ignore_ascii_case(b"online");
                    if birth {
                        tracing::info!("alarm: Home Assistant is online; re-publishing discovery and state");
                        self.announce(Broker::Embedded, SystemTime::now()).await;
                    }
                },
                _ = tokio::time::sleep(sleep.unwrap_or(Duration::ZERO)), if sleep.is_some() => {
                    let now = SystemTime::now();
                    let effects = self.alarm.advance(now);
                    self.persist_and_publish(effects, Vec::new(), false, now).await;
                }
            }
        }
        for (_, forwarder) in self
            .sensor_topics
            .drain()
            .chain(self.link_sensor_topics.drain())
        {
            forwarder.abort();
        }
        // On the external broker the MQTT link publishes `offline` when it stops.
        self.publish_on(Broker::Embedded, topics::AVAILABILITY, "offline", true)
            .await;
    }

    async fn on_request(&mut self, request: Request) {
        let now = SystemTime::now();
        match request {
            Request::Command {
                checked,
                reply,
                ack,
            } => {
                let answer = self.on_command(checked, now).await;
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
                if let Some(ack) = ack {
                    ack.commit();
                }
            }
            Request::BadPayload {
                reason,
                message,
                via,
                who,
                ack,
            } => {
                tracing::info!(reason, %message, "alarm: command refused");
                let mut event = NewAlarmEvent::new(now, AlarmEventKind::CommandRefused);
                event.who = who;
                event.via = Some(ha::via_str(via).into());
                event.detail = Some(format!("{reason}: {message}"));
                let effects = self.alarm.advance(now);
                self.persist_and_publish(effects, vec![event], false, now)
                    .await;
                self.publish_error(None, reason, &message, None).await;
                self.republish_state().await;
                // Refused, but answered: resending it would be refused again.
                if let Some(ack) = ack {
                    ack.commit();
                }
            }
            Request::Announce(broker) => self.announce(broker, now).await,
            Request::LinkChanged => {
                for (_, forwarder) in self.link_sensor_topics.drain() {
                    forwarder.abort();
                }
                self.subscribe_link_sensors();
            }
            Request::Status(tx) => {
                let effects = self.alarm.advance(now);
                self.persist_and_publish(effects, Vec::new(), false, now)
                    .await;
                let _ = tx.send(self.alarm.status(now));
            }
            Request::Sensors(tx) => {
                let views = self
                    .alarm
                    .sensors()
                    .map(|s| SensorView {
                        active: self.alarm.sensor_state(&s.id),
                        sensor: s.clone(),
                    })
                    .collect();
                let _ = tx.send(views);
            }
            Request::Reload(tx) => {
                let result = self.reload(now).await;
                let _ = tx.send(result);
            }
        }
    }

    async fn reload(&mut self, now: SystemTime) -> Result<(), AlarmError> {
        let settings = self.store.alarm_settings().await?;
        let sensors = self.store.alarm_sensors().await?;
        let effects = self.alarm.advance(now);
        self.alarm.reconfigure(settings, sensors);
        self.subscribe_sensors();
        self.persist_and_publish(effects, Vec::new(), true, now)
            .await;
        self.announce(Broker::Embedded, now).await;
        self.announce(Broker::External, now).await;
        Ok(())
    }

    async fn on_command(&mut self, checked: Checked, now: SystemTime) -> CommandReply {
        let Checked {
            action,
            force,
            via,
            who,
            code,
        } = checked;
        let mut events = Vec::new();
        let event = |kind: AlarmEventKind, who: &Option<String>| {
            let mut e = NewAlarmEvent::new(now, kind);
            e.who = who.clone();
            e.via = Some(ha::via_str(via).into());
            e
        };
        let refusal = match &code {
            CodeCheck::Refused(r) => Some(Refusal {
                reason: r.reason,
                message: r.message.clone(),
                retry_after: r.retry_after,
                sensors: Vec::new(),
            }),
            CodeCheck::NotPermitted { .. } => Some(Refusal {
                reason: "not_permitted",
                message: format!("this code may not {}", action_verb(action)),
                retry_after: None,
                sensors: Vec::new(),
            }),
            CodeCheck::None | CodeCheck::Valid { .. } => None,
        };
        if let Some(refusal) = refusal {
            // The machine never sees a refused code; the deadlines still resolve first.
            let effects = self.alarm.advance(now);
            let mut e = event(AlarmEventKind::CodeRefused, &who);
            e.detail = Some(format!("{}: {}", action.as_str(), refusal.reason));
            events.push(e);
            if let CodeCheck::NotPermitted { duress: true } = code {
                // A help call goes out even when the code may not do this.
                events.push(event(AlarmEventKind::Duress, &who));
                self.publish_duress(who.as_deref(), via, now).await;
            }
            tracing::info!(action = %action, reason = refusal.reason, ?via, "alarm: code refused");
            self.persist_and_publish(effects, events, false, now).await;
            self.publish_error(
                Some(action.as_str()),
                refusal.reason,
                &refusal.message,
                refusal.retry_after,
            )
            .await;
            self.republish_state().await;
            return CommandReply::Refused(refusal, self.alarm.status(now));
        }
        let code_use = match code {
            CodeCheck::Valid { duress: true } => CodeUse::Duress,
            CodeCheck::Valid { duress: false } => CodeUse::Normal,
            _ => CodeUse::None,
        };
        let auth = Authorization {
            who: who.clone(),
            via,
            code: code_use,
        };
        let outcome = self.alarm.command(Command { action, force }, &auth, now);
        if outcome.verdict != Verdict::Duplicate && code_use != CodeUse::None {
            // Duress uses are logged as plain code uses here; the duress event is separate.
            let mut e = event(AlarmEventKind::CodeAccepted, &who);
            e.detail = Some(action.as_str().into());
            events.push(e);
        }
        match outcome.verdict {
            Verdict::Accepted => {
                self.persist_and_publish(outcome.effects, events, true, now)
                    .await;
                CommandReply::Accepted(self.alarm.status(now))
            }
            Verdict::Duplicate => {
                self.persist_and_publish(outcome.effects, events, false, now)
                    .await;
                CommandReply::Duplicate(self.alarm.status(now))
            }
            Verdict::Rejected(rejection) => {
                let mut e = event(AlarmEventKind::CommandRefused, &who);
                e.from_state = Some(self.alarm.state().as_str().into());
                e.detail = Some(format!("{}: {}", action.as_str(), rejection));
                events.push(e);
                tracing::info!(action = %action, reason = rejection.reason(), ?via, "alarm: command refused");
                self.persist_and_publish(outcome.effects, events, true, now)
                    .await;
                let retry_after = match &rejection {
                    porchlight_domain::alarm::Rejection::RearmGuard { retry_after_ms } => {
                        Some(Duration::from_millis(*retry_after_ms))
                    }
                    _ => None,
                };
                let sensors = match &rejection {
                    porchlight_domain::alarm::Rejection::OpenSensors { sensors, .. } => {
                        sensors.clone()
                    }
                    _ => Vec::new(),
                };
                let refusal = Refusal {
                    reason: rejection.reason(),
                    message: rejection.to_string(),
                    retry_after,
                    sensors,
                };
                self.publish_error(
                    Some(action.as_str()),
                    refusal.reason,
                    &refusal.message,
                    retry_after,
                )
                .await;
                self.republish_state().await;
                CommandReply::Refused(refusal, self.alarm.status(now))
            }
        }
    }

    async fn on_sensor(&mut self, inbound: &Inbound) {
        let now = SystemTime::now();
        let readings: Vec<(SensorId, bool)> = self
            .alarm
            .sensors()
            .filter_map(|s| {
                match s.source.read_mqtt(&inbound.topic, &inbound.payload)? {
                    Ok(Some(active)) => Some((s.id.clone(), active)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(sensor = %s.id, error = %e, "alarm: sensor message not understood");
                        None
                    }
                }
            })
            .collect();
        let mut effects = Vec::new();
        for (id, active) in readings {
            match self.alarm.sensor(&id, active, now) {
                Ok(more) => effects.extend(more),
                Err(e) => tracing::debug!(error = %e, "alarm: sensor vanished"),
            }
        }
        self.persist_and_publish(effects, Vec::new(), false, now)
            .await;
    }

    /// Persists the snapshot and the events of a step (nothing when there are neither
    /// effects, events nor `force_snapshot`), then publishes what changed.
    async fn persist_and_publish(
        &mut self,
        effects: Vec<Effect>,
        mut events: Vec<NewAlarmEvent>,
        force_snapshot: bool,
        now: SystemTime,
    ) {
        if effects.is_empty() && events.is_empty() && !force_snapshot {
            return;
        }
        let mut state_changed = false;
        let mut duress = Vec::new();
        for effect in &effects {
            match effect {
                Effect::Transition(t) => {
                    state_changed = true;
                    tracing::info!(from = %t.from, to = %t.to, by = ?t.by, "alarm state changed");
                    let mut e = NewAlarmEvent::new(t.at, AlarmEventKind::Transition);
                    e.who = t.by.clone();
                    e.via = t.via.map(|v| ha::via_str(v).into());
                    e.from_state = Some(t.from.as_str().into());
                    e.to_state = Some(t.to.as_str().into());
                    e.detail = Some(reason_text(&t.reason));
                    if let TransitionReason::Sensor(id) = &t.reason {
                        e.sensor = Some(id.0.clone());
                    }
                    events.push(e);
                }
                Effect::SensorTripped {
                    sensor,
                    state,
                    instant,
                } => {
                    let mut e = NewAlarmEvent::new(now, AlarmEventKind::SensorTripped);
                    e.sensor = Some(sensor.0.clone());
                    e.from_state = Some(state.as_str().into());
                    e.detail = Some(if *instant { "instant" } else { "entry delay" }.into());
                    events.push(e);
                }
                Effect::Bypassed { sensors } => {
                    let mut e = NewAlarmEvent::new(now, AlarmEventKind::Bypassed);
                    e.detail = Some(
                        sensors
                            .iter()
                            .map(|s| s.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    );
                    events.push(e);
                }
                Effect::Duress { by, via } => {
                    let mut e = NewAlarmEvent::new(now, AlarmEventKind::Duress);
                    e.who = by.clone();
                    e.via = Some(ha::via_str(*via).into());
                    events.push(e);
                    duress.push((by.clone(), *via));
                }
                Effect::SensorChanged { .. } => {}
            }
        }
        let snapshot = (!effects.is_empty() || force_snapshot).then(|| self.alarm.snapshot());
        if let Some(last) = events.last() {
            self.last_event = Some(last.clone());
        }
        if let Err(e) = self
            .store
            .record_alarm_step(snapshot.as_ref(), events, now)
            .await
        {
            // The alarm goes on in memory; the next step writes the snapshot again.
            tracing::error!(error = %e, "alarm: persisting a step failed");
        }
        for (by, via) in duress {
            tracing::warn!(?via, "alarm: duress code used");
            self.publish_duress(by.as_deref(), via, now).await;
        }
        if state_changed {
            self.republish_state().await;
        }
        self.publish_attributes(now).await;
        self.status.send_replace(self.alarm.status(now));
    }

    /// The MQTT topics the configured sensors listen to.
    fn sensor_topic_set(&self) -> BTreeMap<String, ()> {
        self.alarm
            .sensors()
            .filter_map(|s| s.source.mqtt_topic().map(|t| (t.to_owned(), ())))
            .collect()
    }

    /// Subscribes to the sensor topics now configured, on the embedded broker and through
    /// the MQTT link, and drops the others.
    fn subscribe_sensors(&mut self) {
        self.subscribe_link_sensors();
        let Some(bus) = &self.bus else {
            return;
        };
        let wanted = self.sensor_topic_set();
        keep_wanted(&mut self.sensor_topics, &wanted);
        for topic in wanted.into_keys() {
            if self.sensor_topics.contains_key(&topic) {
                continue;
            }
            let mut rx = bus.consume(&topic, 64);
            let tx = self.sensor_tx.clone();
            let forwarder = tokio::spawn(async move {
                while let Some(inbound) = rx.recv().await {
                    if tx.send(inbound).await.is_err() {
                        return;
                    }
                }
            });
            self.sensor_topics.insert(topic, forwarder);
        }
    }

    /// The sensor topics on the external broker, while the MQTT link runs. Its messages
    /// carry no identity: the external broker's ACL decides who may publish them.
    fn subscribe_link_sensors(&mut self) {
        let link = self.link.borrow().as_ref().map(|c| c.handle.clone());
        let Some(link) = link else {
            for (_, forwarder) in self.link_sensor_topics.drain() {
                forwarder.abort();
            }
            return;
        };
        let wanted = self.sensor_topic_set();
        keep_wanted(&mut self.link_sensor_topics, &wanted);
        for topic in wanted.into_keys() {
            if self.link_sensor_topics.contains_key(&topic) {
                continue;
            }
            let mut rx = match link.subscribe(&topic) {
                Ok(rx) => rx,
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "alarm: sensor topic not subscribed through the MQTT link");
                    continue;
                }
            };
            let tx = self.sensor_tx.clone();
            let forwarder = tokio::spawn(async move {
                while let Some(message) = rx.recv().await {
                    let inbound = Inbound {
                        topic: message.topic,
                        payload: message.payload,
                        qos: 0,
                        retain: message.retain,
                        origin: Origin::Client,
                        identity: None,
                        client_id: "mqtt-link".to_owned(),
                    };
                    if tx.send(inbound).await.is_err() {
                        return;
                    }
                }
            });
            self.link_sensor_topics.insert(topic, forwarder);
        }
    }

    /// Discovery (panel and duress event), availability, state and attributes, on `broker`.
    async fn announce(&self, broker: Broker, now: SystemTime) {
        let topics = self.topics(broker);
        let panel = ha::panel_config(&self.config, self.alarm.settings(), topics);
        self.publish_on(
            broker,
            &ha::panel_topic(&self.config),
            panel.to_string(),
            true,
        )
        .await;
        let duress = ha::duress_config(&self.config, topics);
        self.publish_on(
            broker,
            &ha::duress_topic(&self.config),
            duress.to_string(),
            true,
        )
        .await;
        if broker == Broker::Embedded {
            // The MQTT link publishes its own (`online` after each CONNACK).
            self.publish_on(broker, &topics.availability, "online", true)
                .await;
        }
        self.publish_on(broker, &topics.state, self.alarm.state().as_str(), true)
            .await;
        self.publish_on(broker, &topics.attributes, self.attributes(now), true)
            .await;
    }

    async fn republish_state(&self) {
        self.publish(|t| &t.state, self.alarm.state().as_str(), true)
            .await;
    }

    async fn publish_attributes(&self, now: SystemTime) {
        self.publish(|t| &t.attributes, self.attributes(now), true)
            .await;
    }

    fn attributes(&self, now: SystemTime) -> String {
        let status = self.alarm.status(now);
        let name_of = |id: &str| {
            self.alarm
                .sensors()
                .find(|s| s.id.0 == id)
                .map_or_else(|| id.to_owned(), |s| s.name.clone())
        };
        ha::attributes(&status, name_of, self.last_event.as_ref()).to_string()
    }

    async fn publish_error(
        &self,
        action: Option<&str>,
        reason: &str,
        message: &str,
        retry_after: Option<Duration>,
    ) {
        let body = ha::error(
            action,
            reason,
            message,
            retry_after.map(|d| d.as_secs().max(1)),
            self.alarm.state().as_str(),
        );
        self.publish(|t| &t.error, body.to_string(), false).await;
    }

    async fn publish_duress(&self, by: Option<&str>, via: Via, now: SystemTime) {
        let body = ha::duress(by, via, now);
        self.publish(|t| &t.duress, body.to_string(), false).await;
    }

    fn topics(&self, broker: Broker) -> &Topics {
        match broker {
            Broker::Embedded => &self.embedded,
            Broker::External => &self.external,
        }
    }

    /// Publishes on every broker the alarm lives on, each under its own name for the topic.
    async fn publish(
        &self,
        topic: impl Fn(&Topics) -> &String,
        payload: impl Into<Bytes>,
        retain: bool,
    ) {
        let payload = payload.into();
        for broker in [Broker::Embedded, Broker::External] {
            self.publish_on(broker, topic(self.topics(broker)), payload.clone(), retain)
                .await;
        }
    }

    async fn publish_on(
        &self,
        broker: Broker,
        topic: &str,
        payload: impl Into<Bytes>,
        retain: bool,
    ) {
        match broker {
            Broker::Embedded => {
                let Some(bus) = &self.bus else {
                    return;
                };
                if let Err(e) = bus.publish(topic, payload.into(), 1, retain).await {
                    tracing::warn!(topic, error = %e, "alarm: publishing failed");
                }
            }
            Broker::External => {
                let link = self.link.borrow().as_ref().map(|c| c.handle.clone());
                let Some(link) = link else {
                    return;
                };
                // Never waits: while the link is down this is dropped, and everything
                // retained is published again after the next CONNACK.
                if let Err(e) = link.publish(topic, payload.into().to_vec(), retain) {
                    tracing::debug!(topic, error = %e, "alarm: not published through the MQTT link");
                }
            }
        }
    }
}

/// Aborts the forwarders of topics no longer wanted.
fn keep_wanted(forwarders: &mut HashMap<String, JoinHandle<()>>, wanted: &BTreeMap<String, ()>) {
    forwarders.retain(|topic, forwarder| {
        let keep = wanted.contains_key(topic);
        if !keep {
            forwarder.abort();
        }
        keep
    });
}

async fn recv(rx: &mut Option<mpsc::Receiver<Inbound>>) -> Option<Inbound> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn action_verb(action: Action) -> &'static str {
    match action {
        Action::Disarm => "disarm",
        Action::Trigger => "trigger",
        _ => "arm",
    }
}

fn reason_text(reason: &TransitionReason) -> String {
    let ids = |s: &[SensorId]| {
        s.iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match reason {
        TransitionReason::Command(a) => a.as_str().to_owned(),
        TransitionReason::Sensor(id) => format!("sensor {id}"),
        TransitionReason::ExitDelayOver => "exit delay over".into(),
        TransitionReason::EntryDelayOver => "entry delay over".into(),
        TransitionReason::TriggerTimeOver => "trigger time over".into(),
        TransitionReason::ArmingAborted { sensors } => {
            format!("arming aborted: {} opened", ids(sensors))
        }
        TransitionReason::ArmFailed { sensors } => {
            format!("arming failed: {} still open", ids(sensors))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use porchlight_domain::alarm::AlarmState;

    use super::*;

    /// Answers every PIN with what the test put in.
    struct Scripted(Mutex<Result<CodeHolder, PinRefusal>>);

    #[async_trait]
    impl PinVerifier for Scripted {
        async fn verify(
            &self,
            _pin: &Pin,
            _via: Via,
            _peer: Option<IpAddr>,
            _now: SystemTime,
        ) -> Result<CodeHolder, PinRefusal> {
            self.0.lock().unwrap().clone()
        }
    }

    fn holder(may_arm: bool, may_disarm: bool, duress: bool) -> CodeHolder {
        CodeHolder {
            username: "alice".into(),
            may_arm,
            may_disarm,
            duress,
        }
    }

    async fn service(
        answer: Result<CodeHolder, PinRefusal>,
    ) -> (tempfile::TempDir, Store, AlarmService, Arc<Scripted>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).unwrap();
        let verifier = Arc::new(Scripted(Mutex::new(answer)));
        let service = AlarmService::start(
            store.clone(),
            None,
            verifier.clone(),
            AlarmConfig::default(),
            watch::channel(None).1,
        )
        .await
        .unwrap();
        (dir, store, service, verifier)
    }

    fn request(action: Action, pin: Option<&str>) -> CommandRequest {
        CommandRequest {
            action,
            force: false,
            pin: pin.map(|p| Pin::new(p).unwrap()),
            via: Via::Keypad,
            user: None,
            peer: None,
        }
    }

    #[tokio::test]
    async fn a_locked_out_pin_is_refused_with_its_retry_time_and_logged_without_the_code() {
        let (_dir, store, service, _) = service(Err(PinRefusal {
            reason: "locked_out",
            message: "too many wrong codes; try again in 30 s".into(),
            retry_after: Some(Duration::from_secs(30)),
        }))
        .await;
        let handle = service.handle();
        let reply = handle
            .command(request(Action::ArmAway, Some("1234")))
            .await
            .unwrap();
        let CommandReply::Refused(refusal, status) = reply else {
            panic!("{reply:?}");
        };
        assert_eq!(refusal.reason, "locked_out");
        assert_eq!(refusal.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(status.state, AlarmState::Disarmed);
        let events = store
            .alarm_events(None, None, &[AlarmEventKind::CodeRefused], 10)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].via.as_deref(), Some("keypad"));
        assert!(!format!("{events:?}").contains("1234"));
        service.stop().await;
    }

    #[tokio::test]
    async fn a_code_is_refused_for_what_its_holder_may_not_do_but_duress_still_calls() {
        let (_dir, store, service, verifier) = service(Ok(holder(false, true, true))).await;
        let handle = service.handle();
        let reply = handle
            .command(request(Action::ArmHome, Some("0042")))
            .await
            .unwrap();
        assert!(
            matches!(&reply, CommandReply::Refused(r, _) if r.reason == "not_permitted"),
            "{reply:?}"
        );
        let duress = store
            .alarm_events(None, None, &[AlarmEventKind::Duress], 10)
            .await
            .unwrap();
        assert_eq!(duress.len(), 1);
        assert_eq!(duress[0].who.as_deref(), Some("alice"));

        // With the permission: armed, changed by the holder, the status watch follows.
        *verifier.0.lock().unwrap() = Ok(holder(true, true, false));
        let mut watch = handle.subscribe();
        let reply = handle
            .command(request(Action::ArmHome, Some("0042")))
            .await
            .unwrap();
        let CommandReply::Accepted(status) = reply else {
            panic!("{reply:?}");
        };
        assert_eq!(status.state, AlarmState::ArmedHome);
        assert_eq!(status.changed_by.as_deref(), Some("alice"));
        assert_eq!(watch.borrow_and_update().state, AlarmState::ArmedHome);
        assert_eq!(handle.status().await.unwrap().state, AlarmState::ArmedHome);
        // The same command again within the window: a duplicate, nothing recorded.
        let again = handle
            .command(request(Action::ArmHome, Some("0042")))
            .await
            .unwrap();
        assert!(matches!(again, CommandReply::Duplicate(_)), "{again:?}");
        let accepted = store
            .alarm_events(None, None, &[AlarmEventKind::CodeAccepted], 10)
            .await
            .unwrap();
        assert_eq!(accepted.len(), 1);
        service.stop().await;
    }

    #[tokio::test]
    async fn reload_takes_new_settings_and_sensors_from_the_store() {
        let (_dir, store, service, _) = service(Err(PinRefusal::wrong())).await;
        let handle = service.handle();
        assert!(handle.sensors().await.unwrap().is_empty());
        let settings = porchlight_domain::alarm::Settings {
            code_arm_required: false,
            ..Default::default()
        };
        store
            .set_alarm_settings(&settings, SystemTime::now())
            .await
            .unwrap();
        let sensor: Sensor = serde_json::from_value(serde_json::json!({
            "id": "hall", "name": "Hall", "kind": "motion", "modes": ["away"],
            "use_entry_delay": false, "allow_open_while_arming": true,
            "source": {"kind": "mqtt", "topic": "hall/motion", "on": "ON", "off": "OFF"}
        }))
        .unwrap();
        store
            .put_alarm_sensor(&sensor, SystemTime::now())
            .await
            .unwrap();
        // Not yet: the running alarm has the old settings.
        let before = handle
            .command(request(Action::ArmHome, None))
            .await
            .unwrap();
        assert!(
            matches!(&before, CommandReply::Refused(r, _) if r.reason == "code_required"),
            "{before:?}"
        );
        handle.reload().await.unwrap();
        let sensors = handle.sensors().await.unwrap();
        assert_eq!(sensors.len(), 1);
        assert_eq!(sensors[0].active, None);
        let mut night = request(Action::ArmNight, None);
        night.user = Some("bob".into());
        let after = handle.command(night).await.unwrap();
        assert!(matches!(after, CommandReply::Accepted(_)), "{after:?}");
        service.stop().await;
        // The snapshot was persisted with the step.
        let record = store.alarm_record().await.unwrap();
        assert_eq!(record.snapshot.unwrap().state, AlarmState::ArmedNight);
    }
}
