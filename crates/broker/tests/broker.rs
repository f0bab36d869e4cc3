//! End-to-end tests of the embedded broker with real MQTT clients: rumqttc, mosquitto_pub /
//! mosquitto_sub, and a hand-rolled CONNECT to read exact CONNACK codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use porchlight_broker::{
    AuditEvent, Broker, BrokerConfig, Credentials, Delivery, Error, Friendships, Gatekeeper, Grant,
    Identity, Inbound, LoginMethod, Origin, Origins, Refusal, Role, Watched,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- fake gatekeeper

struct FakeGatekeeper {
    /// username -> (password, identity)
    users: HashMap<String, (String, Identity)>,
    refuse_all: AtomicBool,
    events: Mutex<Vec<AuditEvent>>,
}

impl FakeGatekeeper {
    fn new() -> Arc<Self> {
        let mut users = HashMap::new();
        let mut add = |name: &str, user_id, role, device_id| {
            let identity = Identity {
                user_id,
                username: name.into(),
                role,
                device_id,
                login: if device_id.is_some() {
                    LoginMethod::DeviceKey
                } else {
                    LoginMethod::Password
                },
                certificate: None,
            };
            users.insert(name.to_string(), (format!("{name}-pw"), identity));
        };
        add("alice", 1, Role::User, Some(11));
        add("bob", 2, Role::User, Some(21));
        add("ha", 3, Role::HomeAssistant, None);
        add("admin", 4, Role::Admin, None);
        Arc::new(Self {
            users,
            refuse_all: AtomicBool::new(false),
            events: Mutex::default(),
        })
    }

    fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The identity `username` authenticates as, as a Bus message carries it.
    fn identity(&self, username: &str) -> Option<Arc<Identity>> {
        Some(Arc::new(self.users[username].1.clone()))
    }

    fn connect_codes(&self, client_id: &str) -> Vec<u8> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                AuditEvent::Connect {
                    client_id: c, code, ..
                } if c == client_id => Some(code),
                _ => None,
            })
            .collect()
    }
}

#[async_trait]
impl Gatekeeper for FakeGatekeeper {
    async fn authenticate(&self, c: &Credentials) -> Result<Identity, Refusal> {
        if let Some(cn) = &c.cert_cn {
            // a CA-verified client certificate is the credential
            return self
                .users
                .get(cn)
                .map(|(_, id)| id.clone())
                .ok_or(Refusal::NotAuthorized);
        }
        let username = c.username.as_deref().ok_or(Refusal::NotAuthorized)?;
        if username == "disabled" || self.refuse_all.load(Ordering::SeqCst) {
            return Err(Refusal::NotAuthorized);
        }
        let (password, identity) = self.users.get(username).ok_or(Refusal::BadCredentials)?;
        if c.password.as_deref() != Some(password.as_bytes()) {
            return Err(Refusal::BadCredentials);
        }
        Ok(identity.clone())
    }

    fn record(&self, event: AuditEvent) {
        self.events.lock().unwrap().push(event);
    }
}

/// Logs (including rmqtt's `log` records) with `RUST_LOG=...`, e.g. `RUST_LOG=rmqtt=debug`.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn start_with(max_payload: usize) -> (Broker, Arc<FakeGatekeeper>, tempfile::TempDir) {
    start_config(|c| c.max_payload = max_payload).await
}

async fn start_config(
    adjust: impl FnOnce(&mut BrokerConfig),
) -> (Broker, Arc<FakeGatekeeper>, tempfile::TempDir) {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    adjust(&mut config);
    let gk = FakeGatekeeper::new();
    let broker = Broker::start(config, gk.clone()).await.unwrap();
    (broker, gk, dir)
}

async fn start() -> (Broker, Arc<FakeGatekeeper>, tempfile::TempDir) {
    start_with(256 * 1024).await
}

// ---------------------------------------------------------------- rumqttc helper

/// A rumqttc client whose event loop runs in a task; events arrive on a channel, and the
/// loop stops at the first error (so rumqttc does not reconnect behind the test's back).
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

fn options(addr: SocketAddr, client_id: &str, user: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials(user, format!("{user}-pw"));
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1024 * 1024, 1024 * 1024);
    o
}

impl Client {
    fn spawn(options: MqttOptions) -> Client {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        Client {
            client,
            events,
            task,
        }
    }

    /// Send DISCONNECT, then close the socket (rmqtt waits for the client to close it).
    async fn disconnect(self) {
        self.client.disconnect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.task.abort();
        let _ = self.task.await;
    }

    /// Connect as `user` (password `<user>-pw`) and wait for a successful CONNACK.
    async fn connect(addr: SocketAddr, client_id: &str, user: &str) -> Client {
        let mut c = Client::spawn(options(addr, client_id, user));
        c.expect_connack().await;
        c
    }

    async fn next(&mut self) -> Option<Result<Packet, String>> {
        timeout(WAIT, self.events.recv()).await.ok().flatten()
    }

    async fn expect_connack(&mut self) {
        match self.next().await {
            Some(Ok(Packet::ConnAck(ack))) => {
                assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
        self.client.subscribe(filter, qos).await.unwrap();
        loop {
            match self.next().await {
                Some(Ok(Packet::SubAck(ack))) => return ack.return_codes[0],
                Some(Ok(_)) => {}
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    /// The next PUBLISH received within `wait`, skipping acks.
    async fn next_publish_within(&mut self, wait: Duration) -> Option<rumqttc::Publish> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(Packet::Publish(p)))) => return Some(p),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("connection error while waiting for PUBLISH: {e}"),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn expect_publish(&mut self) -> rumqttc::Publish {
        self.next_publish_within(WAIT)
            .await
            .expect("expected a PUBLISH")
    }

    /// Wait until the connection fails; returns the error text.
    async fn expect_closed(&mut self) -> String {
        loop {
            match self.next().await {
                Some(Err(e)) => return e,
                Some(Ok(_)) => {}
                None => panic!("connection still open"),
            }
        }
    }
}

// ---------------------------------------------------------------- raw CONNECT helper

fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s);
}

struct RawConnect<'a> {
    level: u8,
    client_id: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    will: Option<(&'a str, &'a [u8])>,
}

impl RawConnect<'_> {
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_str(&mut body, if self.level == 3 { b"MQIsdp" } else { b"MQTT" });
        body.push(self.level);
        let mut flags = 0x02; // clean session
        if self.will.is_some() {
            flags |= 0x04;
        }
        if self.user.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        body.push(flags);
        body.extend_from_slice(&30u16.to_be_bytes());
        if self.level == 5 {
            body.push(0); // no properties
        }
        put_str(&mut body, self.client_id.as_bytes());
        if let Some((topic, msg)) = self.will {
            if self.level == 5 {
                body.push(0); // no will properties
            }
            put_str(&mut body, topic.as_bytes());
            put_str(&mut body, msg);
        }
        if let Some(u) = self.user {
            put_str(&mut body, u.as_bytes());
        }
        if let Some(p) = self.password {
            put_str(&mut body, p.as_bytes());
        }
        let mut packet = vec![0x10];
        let mut len = body.len();
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            packet.push(byte);
            if len == 0 {
                break;
            }
        }
        packet.extend_from_slice(&body);
        packet
    }

    /// Send the CONNECT and return the CONNACK return / reason code, plus the open stream.
    async fn send(&self, addr: SocketAddr) -> (u8, TcpStream) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&self.encode()).await.unwrap();
        let mut head = [0u8; 2];
        timeout(WAIT, s.read_exact(&mut head))
            .await
            .expect("CONNACK timeout")
            .unwrap();
        assert_eq!(head[0], 0x20, "not a CONNACK");
        let mut rest = vec![0u8; usize::from(head[1])];
        s.read_exact(&mut rest).await.unwrap();
        (rest[1], s)
    }
}

async fn raw_code(
    addr: SocketAddr,
    level: u8,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> u8 {
    RawConnect {
        level,
        client_id,
        user,
        password,
        will: None,
    }
    .send(addr)
    .await
    .0
}

async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn recv_inbound(rx: &mut mpsc::Receiver<Inbound>) -> Option<Inbound> {
    timeout(WAIT, rx.recv()).await.ok().flatten()
}

async fn run_tool(program: &str, args: &[&str]) -> std::process::Output {
    let out = tokio::process::Command::new(program).args(args).output();
    timeout(Duration::from_secs(10), out)
        .await
        .expect("tool timed out")
        .unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_password_connects_and_is_audited() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    assert_ne!(addr.port(), 0);
    assert!(broker.is_running());
    let _c = Client::connect(addr, "alice-phone", "alice").await;
    assert!(eventually(|| broker.connection_count() == 1).await);
    assert_eq!(gk.connect_codes("alice-phone"), vec![0]);
    let connect = gk
        .events()
        .into_iter()
        .find(|e| matches!(e, AuditEvent::Connect { .. }));
    match connect {
        Some(AuditEvent::Connect {
            username,
            protocol,
            peer,
            reason,
            ..
        }) => {
            assert_eq!(reason, "accepted");
            assert_eq!(username.as_deref(), Some("alice"));
            assert_eq!(protocol, 4);
            assert!(peer.ip().is_loopback());
        }
        other => panic!("{other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_send_the_right_connack_codes() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    // wrong password: 3.1.1 -> 4, v5 -> 0x86
    assert_eq!(
        raw_code(addr, 4, "c1", Some("alice"), Some("nope")).await,
        4
    );
    assert_eq!(
        raw_code(addr, 5, "c2", Some("alice"), Some("nope")).await,
        0x86
    );
    assert_eq!(
        raw_code(addr, 3, "c3", Some("alice"), Some("nope")).await,
        4
    );
    // unknown user is a bad-credentials refusal too
    assert_eq!(raw_code(addr, 4, "c4", Some("mallory"), Some("x")).await, 4);
    // gatekeeper says not authorized: 5 / 0x87
    assert_eq!(
        raw_code(addr, 4, "c5", Some("disabled"), Some("x")).await,
        5
    );
    assert_eq!(
        raw_code(addr, 5, "c6", Some("disabled"), Some("x")).await,
        0x87
    );
    // no credentials at all: refused, never anonymous
    assert_eq!(raw_code(addr, 4, "c7", None, None).await, 5);
    assert_eq!(raw_code(addr, 5, "c8", None, None).await, 0x87);
    assert_eq!(raw_code(addr, 3, "c9", None, None).await, 5);
    // and the good password on each level
    assert_eq!(
        raw_code(addr, 3, "ok3", Some("alice"), Some("alice-pw")).await,
        0
    );
    assert_eq!(
        raw_code(addr, 4, "ok4", Some("alice"), Some("alice-pw")).await,
        0
    );
    assert_eq!(
        raw_code(addr, 5, "ok5", Some("alice"), Some("alice-pw")).await,
        0
    );

    for (client, code) in [
        ("c1", 4),
        ("c2", 0x86),
        ("c3", 4),
        ("c4", 4),
        ("c5", 5),
        ("c6", 0x87),
        ("c7", 5),
        ("c8", 0x87),
        ("c9", 5),
        ("ok3", 0),
        ("ok4", 0),
        ("ok5", 0),
    ] {
        assert!(
            eventually(|| gk.connect_codes(client) == vec![code]).await,
            "{client}: {:?}",
            gk.connect_codes(client)
        );
    }
    // Credentials' Debug never shows the password
    let creds = Credentials {
        username: Some("alice".into()),
        password: Some(b"hunter2".to_vec()),
        client_id: "x".into(),
        peer: addr,
        protocol: porchlight_broker::ProtocolLevel::V311,
        cert_cn: None,
        issued_cert: None,
    };
    assert!(!format!("{creds:?}").contains("hunter2"));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_keeps_users_apart() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    let mut bob = Client::connect(addr, "bob-phone", "bob").await;

    assert_eq!(
        alice.subscribe("owntracks/bob/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Failure
    );
    assert_eq!(
        alice.subscribe("#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Failure
    );
    // A wildcard user level is accepted; delivery then keeps bob's messages from alice.
    assert_eq!(
        alice.subscribe("owntracks/+/phone", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        alice.subscribe("owntracks/alice/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        bob.subscribe("owntracks/bob/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    // alice may not publish into bob's tree: bob gets nothing
    alice
        .client
        .publish("owntracks/bob/phone", QoS::AtLeastOnce, false, "fake")
        .await
        .unwrap();
    // bob's own publish reaches bob, not alice
    bob.client
        .publish("owntracks/bob/phone", QoS::AtLeastOnce, false, "real")
        .await
        .unwrap();
    let p = bob.expect_publish().await;
    assert_eq!(p.topic, "owntracks/bob/phone");
    assert_eq!(&p.payload[..], b"real");
    assert!(
        bob.next_publish_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(
        alice
            .next_publish_within(Duration::from_millis(300))
            .await
            .is_none()
    );

    let events = gk.events();
    let denied_subs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AuditEvent::SubscribeDenied {
                filter, username, ..
            } => {
                assert_eq!(username.as_deref(), Some("alice"));
                Some(filter.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(denied_subs, vec!["owntracks/bob/#", "#"]);
    assert!(events.iter().any(|e| matches!(e,
        AuditEvent::PublishDenied { topic, client_id, .. }
            if topic == "owntracks/bob/phone" && client_id == "alice-phone")));
    broker.shutdown().await;
}

/// bob (2) granting alice (1), as the app hands it to the broker.
fn bob_grants_alice() -> Arc<Friendships> {
    Arc::new(Friendships::new([Grant {
        owner_id: 2,
        owner: "bob".into(),
        viewer_id: 1,
    }]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_receives_the_location_view_only_while_granted_without_resubscribing() {
    let (friends, rx) = tokio::sync::watch::channel(Arc::new(Friendships::default()));
    let (broker, _gk, _dir) = start_config(|c| c.friendships = rx).await;
    let addr = broker.local_addr();
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    let bob = Client::connect(addr, "bob-phone", "bob").await;
    let admin = Client::connect(addr, "admin-tool", "admin").await;
    let publish = |client: &Client, topic: &'static str, payload: &'static str| {
        let c = client.client.clone();
        async move {
            c.publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap()
        }
    };
    let quiet = Duration::from_millis(400);

    assert_eq!(
        alice.subscribe("owntracks/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        alice.subscribe("owntracks/bob/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Failure,
        "not a friend yet"
    );
    publish(&bob, "owntracks/bob/phone", "before").await;
    publish(&alice, "owntracks/alice/phone", "own").await;
    let p = alice.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("owntracks/alice/phone", &b"own"[..]),
        "her own topics come through owntracks/#, bob's do not"
    );
    assert!(alice.next_publish_within(quiet).await.is_none());

    friends.send_replace(bob_grants_alice());
    publish(&bob, "owntracks/bob/phone", "granted").await;
    publish(&bob, "owntracks/bob/phone/info", "card").await;
    publish(&bob, "owntracks/bob/phone/event", "transition").await;
    publish(&bob, "owntracks/bob/phone/waypoints", "regions").await;
    publish(&admin, "owntracks/carol/phone", "carol").await;
    for (topic, payload) in [
        ("owntracks/bob/phone", "granted"),
        ("owntracks/bob/phone/info", "card"),
        ("owntracks/bob/phone/event", "transition"),
    ] {
        let p = alice.expect_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            (topic, payload.as_bytes())
        );
    }
    assert!(
        alice.next_publish_within(quiet).await.is_none(),
        "neither bob's waypoints nor carol's location"
    );

    friends.send_replace(Arc::new(Friendships::default()));
    publish(&bob, "owntracks/bob/phone", "revoked").await;
    assert!(
        alice.next_publish_within(quiet).await.is_none(),
        "the existing subscription stops at the revoke"
    );
    assert_eq!(broker.dropped_messages(), 0, "withheld is not dropped");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_on_subscribe_follow_the_same_rule() {
    let (_friends, rx) = tokio::sync::watch::channel(bob_grants_alice());
    let (broker, _gk, _dir) = start_config(|c| c.friendships = rx).await;
    let addr = broker.local_addr();
    let mut bob = Client::connect(addr, "bob-phone", "bob").await;
    let mut admin = Client::connect(addr, "admin-tool", "admin").await;
    publish_retained(&mut bob, "owntracks/bob/phone", "bob-last").await;
    publish_retained(&mut bob, "owntracks/bob/phone/cmd", "bob-cmd").await;
    publish_retained(&mut admin, "owntracks/carol/phone", "carol-last").await;
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    assert_eq!(
        alice.subscribe("owntracks/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let p = alice.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain),
        ("owntracks/bob/phone", &b"bob-last"[..], true)
    );
    assert!(
        alice
            .next_publish_within(Duration::from_millis(400))
            .await
            .is_none(),
        "neither carol's retained location nor bob's retained command"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_sends_the_owners_retained_location_and_card_to_existing_subscriptions() {
    let (friends, rx) = tokio::sync::watch::channel(Arc::new(Friendships::default()));
    let (broker, _gk, _dir) = start_config(|c| c.friendships = rx).await;
    let addr = broker.local_addr();
    let mut bob = Client::connect(addr, "bob-phone", "bob").await;
    let mut admin = Client::connect(addr, "admin-tool", "admin").await;
    publish_retained(&mut bob, "owntracks/bob/phone", "bob-last").await;
    publish_retained(&mut bob, "owntracks/bob/phone/info", "bob-card").await;
    publish_retained(&mut bob, "owntracks/bob/phone/cmd", "bob-cmd").await;
    publish_retained(&mut admin, "owntracks/carol/phone", "carol-last").await;
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    for filter in ["owntracks/+/+", "owntracks/+/+/info"] {
        assert_eq!(
            alice.subscribe(filter, QoS::AtLeastOnce).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        );
    }
    let quiet = Duration::from_millis(400);
    assert!(alice.next_publish_within(quiet).await.is_none());

    friends.send_replace(bob_grants_alice());
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = alice.expect_publish().await;
        assert!(p.retain);
        got.push((
            p.topic.clone(),
            String::from_utf8(p.payload.to_vec()).unwrap(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("owntracks/bob/phone".to_owned(), "bob-last".to_owned()),
            ("owntracks/bob/phone/info".to_owned(), "bob-card".to_owned()),
        ]
    );
    assert!(
        alice.next_publish_within(quiet).await.is_none(),
        "not bob's command, not carol's location"
    );
    broker.shutdown().await;
}

/// Publishes a retained QoS 1 message and waits for its PUBACK (rmqtt keeps it before that).
async fn publish_retained(client: &mut Client, topic: &str, payload: &'static str) {
    client
        .client
        .publish(topic, QoS::AtLeastOnce, true, payload)
        .await
        .unwrap();
    loop {
        match client.next().await {
            Some(Ok(Packet::PubAck(_))) => return,
            Some(Ok(_)) => {}
            other => panic!("no PUBACK for {topic}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_sees_allowed_publishes_only_and_reaches_subscribers() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    let bus = broker.bus();
    let mut inbound = bus.consume("owntracks/#", 16);
    let alice = Client::connect(addr, "alice-phone", "alice").await;

    alice
        .client
        .publish("owntracks/bob/phone", QoS::AtLeastOnce, false, "denied")
        .await
        .unwrap();
    alice
        .client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, true, "ok")
        .await
        .unwrap();
    let got = recv_inbound(&mut inbound).await.unwrap();
    assert_eq!(
        got,
        Inbound {
            topic: "owntracks/alice/phone".into(),
            payload: Bytes::from_static(b"ok"),
            qos: 1,
            retain: true,
            origin: Origin::Client,
            identity: gk.identity("alice"),
            client_id: "alice-phone".into(),
        }
    );
    assert!(
        timeout(Duration::from_millis(300), inbound.recv())
            .await
            .is_err()
    );

    // app publish reaches a subscriber, live and retained
    let mut ha = Client::connect(addr, "ha", "ha").await;
    assert_eq!(
        ha.subscribe("porchlight/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    bus.publish(
        "porchlight/alarm/state",
        Bytes::from_static(b"armed_away"),
        1,
        true,
    )
    .await
    .unwrap();
    let p = ha.expect_publish().await;
    assert_eq!(p.topic, "porchlight/alarm/state");
    assert_eq!(&p.payload[..], b"armed_away");
    let mut late = Client::connect(addr, "ha-late", "ha").await;
    late.subscribe("porchlight/alarm/#", QoS::AtMostOnce).await;
    let p = late.expect_publish().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"armed_away");

    // a client's retained message reaches a later subscriber too
    let mut alice2 = Client::connect(addr, "alice-laptop", "alice").await;
    alice2
        .subscribe("owntracks/alice/#", QoS::AtLeastOnce)
        .await;
    let p = alice2.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain),
        ("owntracks/alice/phone", &b"ok"[..], true)
    );

    assert!(matches!(
        bus.publish("a/+", Bytes::new(), 0, false).await,
        Err(Error::InvalidTopic(_))
    ));
    assert!(matches!(
        bus.publish("a/b", Bytes::new(), 3, false).await,
        Err(Error::InvalidQos(3))
    ));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_1_and_2_round_trip() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    alice.subscribe("owntracks/alice/#", QoS::ExactlyOnce).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("{qos:?}");
        alice
            .client
            .publish("owntracks/alice/q", qos, false, payload.clone())
            .await
            .unwrap();
        let p = alice.expect_publish().await;
        assert_eq!(p.qos, qos);
        assert_eq!(p.payload, payload.as_bytes());
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_on_all_protocol_levels() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let port = addr.port().to_string();
    let mut inbound = broker.bus().consume("owntracks/alice/#", 16);
    for (version, n) in [("mqttv31", "3"), ("mqttv311", "4"), ("mqttv5", "5")] {
        let out = run_tool(
            "mosquitto_pub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-u",
                "alice",
                "-P",
                "alice-pw",
                "-i",
                &format!("mp-{n}"),
                "-q",
                "1",
                "-t",
                "owntracks/alice/phone",
                "-m",
                n,
            ],
        )
        .await;
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = recv_inbound(&mut inbound).await.unwrap();
        assert_eq!(&got.payload[..], n.as_bytes());
        assert_eq!(got.client_id, format!("mp-{n}"));
    }
    // wrong password is refused with a non-zero exit
    let out = run_tool(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv5",
            "-u",
            "alice",
            "-P",
            "bad",
            "-t",
            "owntracks/alice/x",
            "-m",
            "x",
        ],
    )
    .await;
    assert!(!out.status.success());

    // mosquitto_sub (v5) receives an app publish
    let sub = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv5",
            "-u",
            "ha",
            "-P",
            "ha-pw",
            "-t",
            "homeassistant/#",
            "-C",
            "1",
            "-W",
            "5",
        ])
        .output();
    let sub = tokio::spawn(sub);
    let bus = broker.bus();
    let mut delivered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if broker.connection_count() >= 1 {
            bus.publish(
                "homeassistant/status",
                Bytes::from_static(b"online"),
                0,
                false,
            )
            .await
            .unwrap();
            delivered = true;
            break;
        }
    }
    assert!(delivered);
    let out = sub.await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "online");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_device_kicks_and_refused_reconnect_fails() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    let mut bob = Client::connect(addr, "bob-phone", "bob").await;
    assert!(eventually(|| broker.connection_count() == 2).await);

    assert_eq!(broker.disconnect_device(999).await, 0);
    assert_eq!(broker.disconnect_device(11).await, 1);
    alice.expect_closed().await;
    assert!(eventually(|| broker.connection_count() == 1).await);
    // bob is untouched
    bob.subscribe("owntracks/bob/#", QoS::AtMostOnce).await;

    gk.refuse_all.store(true, Ordering::SeqCst);
    let mut again = Client::spawn(options(addr, "alice-phone", "alice"));
    let err = again.expect_closed().await;
    assert!(
        err.contains("NotAuthorized") || err.contains("refused"),
        "{err}"
    );
    assert_eq!(
        raw_code(addr, 4, "alice-phone", Some("alice"), Some("alice-pw")).await,
        5
    );
    gk.refuse_all.store(false, Ordering::SeqCst);

    assert_eq!(broker.disconnect_user(2).await, 1);
    bob.expect_closed().await;
    assert!(eventually(|| broker.connection_count() == 0).await);
    // the hook runs after the socket is closed
    assert!(
        eventually(|| gk.events().iter().any(|e| matches!(e,
        AuditEvent::Disconnect { client_id, .. } if client_id == "bob-phone")))
        .await
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_client_id_reconnects_twenty_times() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut old: Vec<Client> = Vec::new();
    for i in 0..20 {
        let mut o = options(addr, "owntracks-alice-phone", "alice");
        // OwnTracks uses persistent sessions; alternate to cover both.
        o.set_clean_session(i % 2 == 0);
        let mut c = Client::spawn(o);
        c.expect_connack().await;
        if let Some(prev) = old.last_mut() {
            prev.expect_closed().await;
        }
        old.push(c);
    }
    assert!(eventually(|| broker.connection_count() == 1).await);
    // the last session works
    let last = old.last_mut().unwrap();
    assert_eq!(
        last.subscribe("owntracks/alice/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_client_id_raw_reconnect_without_closing_old_socket() {
    // OwnTracks on a network change: the new connection comes while the old socket is alive.
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut sockets = Vec::new();
    for _ in 0..20 {
        let (code, s) = RawConnect {
            level: 4,
            client_id: "ot-phone",
            user: Some("alice"),
            password: Some("alice-pw"),
            will: None,
        }
        .send(addr)
        .await;
        assert_eq!(code, 0);
        sockets.push(s);
    }
    assert!(eventually(|| broker.connection_count() == 1).await);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_topics_are_checked_at_connect_and_sent_on_unclean_close() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    for (level, code) in [(4, 5), (5, 0x87), (3, 5)] {
        let (got, _s) = RawConnect {
            level,
            client_id: "alice-will",
            user: Some("alice"),
            password: Some("alice-pw"),
            will: Some(("owntracks/bob/phone", b"gone")),
        }
        .send(addr)
        .await;
        assert_eq!(got, code, "level {level}");
    }
    assert!(gk.events().iter().any(|e| matches!(e,
        AuditEvent::Connect { reason, code: 5, .. } if reason.contains("will topic"))));

    // Home Assistant's will: allowed, and published when its socket just closes
    let mut admin = Client::connect(addr, "admin", "admin").await;
    admin
        .subscribe("homeassistant/status", QoS::AtMostOnce)
        .await;
    let mut inbound = broker.bus().consume("homeassistant/status", 4);
    let (code, sock) = RawConnect {
        level: 4,
        client_id: "home-assistant",
        user: Some("ha"),
        password: Some("ha-pw"),
        will: Some(("homeassistant/status", b"offline")),
    }
    .send(addr)
    .await;
    assert_eq!(code, 0);
    drop(sock); // no DISCONNECT
    let p = admin.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("homeassistant/status", &b"offline"[..])
    );
    let got = recv_inbound(&mut inbound).await.unwrap();
    assert_eq!(&got.payload[..], b"offline");
    // the will carries the identity of the connection that left it
    assert_eq!(
        (got.origin, got.identity, got.client_id.as_str()),
        (Origin::Will, gk.identity("ha"), "home-assistant")
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payload_disconnects() {
    let (broker, _gk, _dir) = start_with(1024).await;
    let addr = broker.local_addr();
    let mut inbound = broker.bus().consume("owntracks/alice/#", 4);
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    alice
        .client
        .publish(
            "owntracks/alice/phone",
            QoS::AtLeastOnce,
            false,
            vec![b'x'; 1024],
        )
        .await
        .unwrap();
    assert_eq!(
        recv_inbound(&mut inbound).await.unwrap().payload.len(),
        1024
    );
    alice
        .client
        .publish(
            "owntracks/alice/phone",
            QoS::AtLeastOnce,
            false,
            vec![b'x'; 1025],
        )
        .await
        .unwrap();
    alice.expect_closed().await;
    assert!(
        timeout(Duration::from_millis(300), inbound.recv())
            .await
            .is_err()
    );

    // far beyond the limit: refused by the codec, also a disconnect
    let mut bob = Client::connect(addr, "bob-phone", "bob").await;
    bob.client
        .publish(
            "owntracks/bob/phone",
            QoS::AtMostOnce,
            false,
            vec![b'x'; 200_000],
        )
        .await
        .unwrap();
    bob.expect_closed().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_consume_applies_backpressure_without_loss() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut inbound = broker.bus().consume("owntracks/#", 2);
    let alice = Client::connect(addr, "alice-phone", "alice").await;
    const N: usize = 500;
    for i in 0..N {
        alice
            .client
            .publish(
                "owntracks/alice/phone",
                QoS::AtMostOnce,
                false,
                i.to_string(),
            )
            .await
            .unwrap();
    }
    // let the channel fill up and the publisher stall, then drain everything in order
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..N {
        let got = recv_inbound(&mut inbound)
            .await
            .unwrap_or_else(|| panic!("lost message {i}"));
        assert_eq!(got.payload, i.to_string().as_bytes());
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_in_one_process_are_independent() {
    let (a, _gka, _da) = start().await;
    let (b, _gkb, _db) = start().await;
    assert_ne!(a.local_addr(), b.local_addr());
    let mut in_a = a.bus().consume("#", 4);
    let mut in_b = b.bus().consume("#", 4);
    let ca = Client::connect(a.local_addr(), "alice-phone", "alice").await;
    let cb = Client::connect(b.local_addr(), "alice-phone", "alice").await;
    ca.client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "a")
        .await
        .unwrap();
    cb.client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "b")
        .await
        .unwrap();
    assert_eq!(&recv_inbound(&mut in_a).await.unwrap().payload[..], b"a");
    assert_eq!(&recv_inbound(&mut in_b).await.unwrap().payload[..], b"b");
    assert!(
        timeout(Duration::from_millis(300), in_a.recv())
            .await
            .is_err()
    );
    assert!(eventually(|| a.connection_count() == 1 && b.connection_count() == 1).await);

    // a taken port is reported as such
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::new(a.local_addr(), dir.path().to_path_buf());
    match Broker::start(config, FakeGatekeeper::new()).await {
        Err(Error::PortInUse(addr)) => assert_eq!(addr, a.local_addr()),
        other => panic!("expected PortInUse, got {other:?}"),
    }

    // shutdown closes the port and the sessions
    let addr = a.local_addr();
    a.shutdown().await;
    assert!(eventually(|| std::net::TcpStream::connect(addr).is_err()).await);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_with_one_client_id_all_get_in() {
    // rmqtt alone answers CONNACK 3 to one of two overlapping CONNECTs with the same client id.
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut keep = Vec::new();
    for round in 0..30 {
        let mk = || RawConnect {
            level: if round % 2 == 0 { 4 } else { 5 },
            client_id: "race",
            user: Some("alice"),
            password: Some("alice-pw"),
            will: None,
        };
        let (ra, rb) = (mk(), mk());
        let (a, b) = tokio::join!(ra.send(addr), rb.send(addr));
        assert_eq!((a.0, b.0), (0, 0), "round {round}");
        keep.push(a.1);
        keep.push(b.1);
    }
    assert!(eventually(|| broker.connection_count() == 1).await);
    broker.shutdown().await;
}

// ---------------------------------------------------------------- TLS

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA signing a server certificate (127.0.0.1) and a client certificate with CN `alice`,
/// plus a self-signed "rogue" client certificate with CN `alice`.
fn make_pki(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Porchlight Test CA",
        ],
    ]
    .concat();
    openssl(dir, &ca);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn, ext) in [
        ("server", "localhost", "server.ext"),
        ("alice", "alice", "client.ext"),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let subj = format!("/CN={cn}");
        openssl(
            dir,
            &[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &subj],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        );
    }
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "rogue.key",
                "-out",
                "rogue.pem",
                "-days",
                "2",
                "-subj",
                "/CN=alice",
            ],
        ]
        .concat(),
    );
}

/// A broker whose TLS listener uses `make_pki`'s server files in `d`; with
/// `require_client_cert`, client certificates from its CA log in by their CN.
async fn start_with_tls_files(d: &std::path::Path, require_client_cert: bool) -> Broker {
    let mut config = BrokerConfig::new("127.0.0.1:0".parse().unwrap(), d.to_path_buf());
    config.tls = Some(porchlight_broker::TlsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        identity: porchlight_broker::TlsIdentity::Files {
            cert_path: d.join("server.pem"),
            key_path: d.join("server.key"),
        },
        ca_path: require_client_cert.then(|| d.join("ca.pem")),
        require_client_cert,
    });
    Broker::start(config, FakeGatekeeper::new()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_with_client_certificates() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let broker = start_with_tls_files(d, true).await;
    let tls_port = broker.tls_local_addr().unwrap().port().to_string();
    let mut inbound = broker.bus().consume("owntracks/#", 8);
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let (ca, alice_pem, alice_key, rogue_pem, rogue_key) = (
        p("ca.pem"),
        p("alice.pem"),
        p("alice.key"),
        p("rogue.pem"),
        p("rogue.key"),
    );

    // the certificate is the credential; its CN wins over a username the client sends
    for (version, extra) in [("mqttv311", vec![]), ("mqttv5", vec!["-u", "bob"])] {
        let mut args = vec![
            "-h",
            "127.0.0.1",
            "-p",
            &tls_port,
            "-V",
            version,
            "--cafile",
            &ca,
            "--cert",
            &alice_pem,
            "--key",
            &alice_key,
            "-t",
            "owntracks/alice/phone",
            "-m",
            version,
        ];
        args.extend(extra);
        let out = run_tool("mosquitto_pub", &args).await;
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = recv_inbound(&mut inbound).await.unwrap();
        assert_eq!(
            (got.identity.unwrap().username.as_str(), &got.payload[..]),
            ("alice", version.as_bytes())
        );
    }
    // no client certificate, or one from another CA: no connection
    for (cert, key) in [(None, None), (Some(&rogue_pem), Some(&rogue_key))] {
        let mut args = vec![
            "-h",
            "127.0.0.1",
            "-p",
            &tls_port,
            "--cafile",
            &ca,
            "-u",
            "alice",
            "-P",
            "alice-pw",
            "-t",
            "owntracks/alice/phone",
            "-m",
            "x",
        ];
        if let (Some(c), Some(k)) = (cert, key) {
            args.extend(["--cert", c.as_str(), "--key", k.as_str()]);
        }
        let out = run_tool("mosquitto_pub", &args).await;
        assert!(!out.status.success(), "{cert:?} got in");
    }
    assert!(
        timeout(Duration::from_millis(300), inbound.recv())
            .await
            .is_err()
    );
    // the plain listener still works with passwords
    let _c = Client::connect(broker.local_addr(), "alice-phone", "alice").await;

    // a bad key path is a TLS setup error, not a panic
    let mut config = BrokerConfig::new("127.0.0.1:0".parse().unwrap(), d.to_path_buf());
    config.tls = Some(porchlight_broker::TlsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        identity: porchlight_broker::TlsIdentity::Files {
            cert_path: d.join("server.pem"),
            key_path: d.join("missing.key"),
        },
        ca_path: None,
        require_client_cert: false,
    });
    assert!(matches!(
        Broker::start(config, FakeGatekeeper::new()).await,
        Err(Error::Tls(_))
    ));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_cannot_be_taken_over_by_another_user() {
    // With a persistent session, the new connection inherits the old one's subscriptions
    // (not re-checked against the ACL) and its queued messages.
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut o = options(addr, "shared-id", "alice");
    o.set_clean_session(false);
    let mut alice = Client::spawn(o);
    alice.expect_connack().await;
    alice.subscribe("owntracks/alice/#", QoS::AtLeastOnce).await;
    alice.disconnect().await;
    assert!(eventually(|| broker.connection_count() == 0).await);

    let mut o = options(addr, "shared-id", "bob");
    o.set_clean_session(false);
    let mut bob = Client::spawn(o);
    let bob_got_in = matches!(bob.next().await, Some(Ok(Packet::ConnAck(a))) if a.code == rumqttc::ConnectReturnCode::Success);
    let mut alice2 = Client::connect(addr, "alice-laptop", "alice").await;
    alice2
        .client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "secret")
        .await
        .unwrap();
    loop {
        match alice2.next().await {
            Some(Ok(Packet::PubAck(_))) => break,
            Some(Ok(_)) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    if bob_got_in {
        let leaked = bob.next_publish_within(Duration::from_millis(500)).await;
        assert!(leaked.is_none(), "bob received alice's message: {leaked:?}");
        panic!("bob took over alice's client id");
    }
    assert_eq!(gk.connect_codes("shared-id"), vec![0, 5]);

    // alice herself gets her session back, with the message queued while she was away
    let mut o = options(addr, "shared-id", "alice");
    o.set_clean_session(false);
    let mut alice = Client::spawn(o);
    match alice.next().await {
        Some(Ok(Packet::ConnAck(ack))) => assert!(ack.session_present),
        other => panic!("{other:?}"),
    }
    let p = alice.expect_publish().await;
    assert_eq!(&p.payload[..], b"secret");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_enforced() {
    let (broker, _gk, _dir) = start_config(|c| c.max_connections = 2).await;
    let addr = broker.local_addr();
    let a = Client::connect(addr, "a", "alice").await;
    let _b = Client::connect(addr, "b", "bob").await;
    // a third session: CONNACK 3, server unavailable
    assert_eq!(raw_code(addr, 4, "c", Some("ha"), Some("ha-pw")).await, 3);
    assert_eq!(
        raw_code(addr, 5, "c", Some("ha"), Some("ha-pw")).await,
        0x88
    );
    // but a takeover of an existing client id is not a new session
    let (code, _s) = RawConnect {
        level: 4,
        client_id: "a",
        user: Some("alice"),
        password: Some("alice-pw"),
        will: None,
    }
    .send(addr)
    .await;
    assert_eq!(code, 0);
    drop(a);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_subscribe_burst() {
    // HA sends ~70 SUBSCRIBEs (one filter each) within a second of connecting.
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut ha = Client::connect(addr, "home-assistant", "ha").await;
    let n = 150;
    for i in 0..n {
        ha.client
            .subscribe(format!("homeassistant/sensor/e{i}/state"), QoS::AtMostOnce)
            .await
            .unwrap();
    }
    let mut acks = 0;
    while acks < n {
        match ha.next().await {
            Some(Ok(Packet::SubAck(ack))) => {
                assert_eq!(
                    ack.return_codes,
                    vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
                );
                acks += 1;
            }
            Some(Ok(_)) => {}
            other => panic!("after {acks} SUBACKs: {other:?}"),
        }
    }
    broker
        .bus()
        .publish(
            "homeassistant/sensor/e77/state",
            Bytes::from_static(b"on"),
            0,
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        ha.expect_publish().await.topic,
        "homeassistant/sensor/e77/state"
    );
    broker.shutdown().await;
}

/// Not a correctness test: `cargo test --release -p porchlight-broker --test broker
/// ingest_throughput -- --ignored --nocapture` prints how fast OwnTracks-sized publishes
/// reach a `Bus::consume` receiver.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn ingest_throughput() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut inbound = broker.bus().consume("owntracks/+/+", 1024);
    let payload = r#"{"_type":"location","acc":12,"alt":40,"batt":81,"bs":1,"conn":"w","created_at":1700000000,"lat":52.520008,"lon":13.404954,"m":1,"t":"u","tid":"ph","tst":1700000000,"vac":3,"vel":0}"#;
    let clients = 4;
    let per_client = 25_000;
    let mut pubs = Vec::new();
    for c in 0..clients {
        let mut o = options(addr, &format!("bench-{c}"), "admin");
        o.set_inflight(1000);
        let client = Client::spawn(o);
        pubs.push(client);
    }
    for c in &mut pubs {
        c.expect_connack().await;
    }
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in pubs.iter().enumerate() {
        let client = client.client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                client
                    .publish(
                        format!("owntracks/u{c}/phone"),
                        QoS::AtMostOnce,
                        false,
                        payload,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    let total = clients * per_client;
    for i in 0..total {
        if recv_inbound(&mut inbound).await.is_none() {
            panic!("stalled after {i}");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{total} publishes in {secs:.2}s = {:.0}/s",
        total as f64 / secs
    );
    for t in tasks {
        t.await.unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_survive_a_restart() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("mqtt"));
    let broker = Broker::start(config.clone(), FakeGatekeeper::new())
        .await
        .unwrap();
    let addr = broker.local_addr();
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    for (topic, payload) in [
        ("owntracks/alice/phone", "here"),
        ("owntracks/alice/gone", "x"),
    ] {
        alice
            .client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }
    // clearing a retained message: empty retained payload
    alice
        .client
        .publish("owntracks/alice/gone", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let mut acks = 0;
    while acks < 3 {
        if let Some(Ok(Packet::PubAck(_))) = alice.next().await {
            acks += 1;
        }
    }
    let bus = broker.bus();
    bus.publish(
        "porchlight/alarm/state",
        Bytes::from_static(b"disarmed"),
        1,
        true,
    )
    .await
    .unwrap();
    broker.shutdown().await;
    assert!(dir.path().join("mqtt/retained.json").exists());

    let broker = Broker::start(config, FakeGatekeeper::new()).await.unwrap();
    let addr = broker.local_addr();
    let mut admin = Client::connect(addr, "admin", "admin").await;
    admin.subscribe("#", QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    while let Some(p) = admin.next_publish_within(Duration::from_millis(500)).await {
        assert!(p.retain);
        got.push((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("owntracks/alice/phone".to_string(), "here".to_string()),
            ("porchlight/alarm/state".to_string(), "disarmed".to_string()),
        ]
    );
    broker.shutdown().await;
}

// ---------------------------------------------------------------- issue 11: takeover, seams, floods

/// Wait for the PUBACK of the last publish of `client` (QoS 1).
async fn expect_puback(client: &mut Client) {
    loop {
        match client.next().await {
            Some(Ok(Packet::PubAck(_))) => return,
            Some(Ok(_)) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

/// A persistent (clean session 0) rumqttc client; returns it and its CONNACK.
async fn persistent(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
) -> (Client, Option<Result<Packet, String>>) {
    let mut o = options(addr, client_id, user);
    o.set_clean_session(false);
    let mut c = Client::spawn(o);
    let ack = c.next().await;
    (c, ack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connects_do_not_hand_a_persistent_session_to_another_user() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    // alice's persistent session subscribes, goes offline, and a message is queued for it
    let (mut alice, ack) = persistent(addr, "victim", "alice").await;
    assert!(matches!(ack, Some(Ok(Packet::ConnAck(_)))), "{ack:?}");
    alice.subscribe("owntracks/alice/#", QoS::AtLeastOnce).await;
    alice.disconnect().await;
    assert!(eventually(|| broker.connection_count() == 0).await);
    let mut laptop = Client::connect(addr, "alice-laptop", "alice").await;
    laptop
        .client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "secret")
        .await
        .unwrap();
    expect_puback(&mut laptop).await;

    // refused CONNECTs with the victim's client id: wrong password, a will alice may not
    // leave, bob with a wrong password, and a bob whose gatekeeper says no
    let refused = |user, password, will| RawConnect {
        level: 4,
        client_id: "victim",
        user: Some(user),
        password: Some(password),
        will,
    };
    assert_eq!(refused("alice", "nope", None).send(addr).await.0, 4);
    let will = Some(("owntracks/bob/phone", &b"x"[..]));
    assert_eq!(refused("alice", "alice-pw", will).send(addr).await.0, 5);
    assert_eq!(refused("bob", "nope", None).send(addr).await.0, 4);
    gk.refuse_all.store(true, Ordering::SeqCst);
    assert_eq!(refused("bob", "bob-pw", None).send(addr).await.0, 5);
    gk.refuse_all.store(false, Ordering::SeqCst);

    // bob, with his right password, does not get alice's session or her queued message
    for clean in [false, true] {
        let mut o = options(addr, "victim", "bob");
        o.set_clean_session(clean);
        let mut bob = Client::spawn(o);
        match bob.next().await {
            Some(Ok(Packet::ConnAck(ack))) => {
                assert!(!ack.session_present, "bob got a session present");
                let leaked = bob.next_publish_within(Duration::from_millis(500)).await;
                panic!("bob took over alice's client id (clean {clean}), got {leaked:?}");
            }
            Some(Err(e)) => assert!(e.contains("NotAuthorized") || e.contains("refused"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    // alice gets her session back, message included
    let (mut alice, ack) = persistent(addr, "victim", "alice").await;
    match ack {
        Some(Ok(Packet::ConnAck(ack))) => assert!(ack.session_present),
        other => panic!("{other:?}"),
    }
    assert_eq!(&alice.expect_publish().await.payload[..], b"secret");
    assert_eq!(gk.connect_codes("victim"), vec![0, 4, 5, 4, 5, 5, 5, 0]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_stays_its_owners_while_its_owner_reconnects() {
    // alice's phone reconnects again and again with its persistent session while bob keeps
    // trying its client id: bob never gets in, alice always does.
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let (mut alice, _) = persistent(addr, "phone", "alice").await;
    alice.subscribe("owntracks/alice/#", QoS::AtLeastOnce).await;
    for round in 0..10 {
        let alice_again = persistent(addr, "phone", "alice");
        let bob = RawConnect {
            level: 4,
            client_id: "phone",
            user: Some("bob"),
            password: Some("bob-pw"),
            will: None,
        };
        let ((next, ack), (bob_code, _bob)) = tokio::join!(alice_again, bob.send(addr));
        assert_eq!(bob_code, 5, "round {round}");
        match ack {
            Some(Ok(Packet::ConnAck(ack))) => assert!(ack.session_present, "round {round}"),
            other => panic!("round {round}: {other:?}"),
        }
        alice = next;
    }
    assert_eq!(
        alice.subscribe("owntracks/alice/#", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    broker.shutdown().await;
}

fn raw_publish(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    assert!(body.len() < 128);
    let mut packet = vec![0x30, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_attached_before_serving_see_the_first_publish() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    let gk = FakeGatekeeper::new();
    let bound = Broker::bind(config, gk.clone()).await.unwrap();
    let addr = bound.local_addr();
    // the port is bound: a client gets in line and publishes at once
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let mut bytes = RawConnect {
        level: 4,
        client_id: "early",
        user: Some("alice"),
        password: Some("alice-pw"),
        will: None,
    }
    .encode();
    bytes.extend(raw_publish("owntracks/alice/phone", b"first"));
    sock.write_all(&bytes).await.unwrap();
    // nobody is served yet
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(gk.connect_codes("early").is_empty());

    let mut inbound = bound.bus().consume("owntracks/#", 4);
    let broker = bound.serve();
    let got = recv_inbound(&mut inbound).await.unwrap();
    assert_eq!(
        (
            got.payload,
            got.origin,
            got.identity,
            got.client_id.as_str()
        ),
        (
            Bytes::from_static(b"first"),
            Origin::Client,
            gk.identity("alice"),
            "early"
        )
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_does_not_slow_publishers_and_learns_what_it_missed() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let bus = broker.bus();
    let mut watch = bus.watch("owntracks/#", 16);
    let mut consumer = bus.consume("owntracks/#", 8);
    let n = 300;
    let consumed = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < n {
            match recv_inbound(&mut consumer).await {
                Some(m) => got.push(m.payload),
                None => break,
            }
        }
        got
    });
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    for i in 0..n {
        alice
            .client
            .publish(
                "owntracks/alice/phone",
                QoS::AtLeastOnce,
                false,
                i.to_string(),
            )
            .await
            .unwrap();
        expect_puback(&mut alice).await;
    }
    // the durable consumer got every one, in order
    let consumed = consumed.await.unwrap();
    let expected: Vec<Bytes> = (0..n).map(|i| Bytes::from(i.to_string())).collect();
    assert_eq!(consumed, expected);
    // the watcher kept the last 16 and is told how many it lost
    assert_eq!(
        timeout(WAIT, watch.recv()).await.unwrap(),
        Some(Watched::Lagged(n as u64 - 16))
    );
    for i in n - 16..n {
        match timeout(WAIT, watch.recv()).await.unwrap() {
            Some(Watched::Message(m)) => assert_eq!(m.payload, i.to_string()),
            other => panic!("{other:?}"),
        }
    }
    // a watcher that keeps up misses nothing; a dropped one is simply gone
    let mut live = bus.watch("owntracks/alice/#", 4);
    drop(bus.watch("owntracks/#", 1));
    alice
        .client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "live")
        .await
        .unwrap();
    expect_puback(&mut alice).await;
    match timeout(WAIT, live.recv()).await.unwrap() {
        Some(Watched::Message(m)) => assert_eq!(&m.payload[..], b"live"),
        other => panic!("{other:?}"),
    }
    // an invalid filter gives a closed watch
    assert_eq!(bus.watch("a/#/b", 4).recv().await, None);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_publishes_reach_only_receivers_that_ask_for_them() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    let bus = broker.bus();
    let mut plain = bus.consume("porchlight/#", 8);
    let mut all = bus.consume_from("porchlight/#", 8, Origins::ALL);
    let mut watch_all = bus.watch_from("porchlight/alarm/#", 8, Origins::ALL);
    let mut watch_plain = bus.watch("porchlight/#", 8);

    bus.publish(
        "porchlight/alarm/state",
        Bytes::from_static(b"armed_away"),
        1,
        true,
    )
    .await
    .unwrap();
    let app = Inbound {
        topic: "porchlight/alarm/state".into(),
        payload: Bytes::from_static(b"armed_away"),
        qos: 1,
        retain: true,
        origin: Origin::App,
        identity: None,
        client_id: "porchlight".into(),
    };
    assert_eq!(recv_inbound(&mut all).await, Some(app.clone()));
    assert_eq!(
        timeout(WAIT, watch_all.recv()).await.unwrap(),
        Some(Watched::Message(app))
    );

    // a client publish reaches both kinds; the plain ones see it first thing
    let ha = Client::connect(addr, "ha", "ha").await;
    ha.client
        .publish("porchlight/alarm/set", QoS::AtLeastOnce, false, "disarm")
        .await
        .unwrap();
    let from_ha = recv_inbound(&mut plain).await.unwrap();
    assert_eq!(
        (
            from_ha.topic.as_str(),
            from_ha.origin,
            from_ha.identity.clone()
        ),
        ("porchlight/alarm/set", Origin::Client, gk.identity("ha"))
    );
    assert_eq!(recv_inbound(&mut all).await, Some(from_ha.clone()));
    assert_eq!(
        timeout(WAIT, watch_plain.recv()).await.unwrap(),
        Some(Watched::Message(from_ha.clone()))
    );
    assert_eq!(
        timeout(WAIT, watch_all.recv()).await.unwrap(),
        Some(Watched::Message(from_ha))
    );
    // and nothing else is waiting for the plain ones
    assert!(
        timeout(Duration::from_millis(300), plain.recv())
            .await
            .is_err()
    );
    assert!(
        timeout(Duration::from_millis(300), watch_plain.recv())
            .await
            .is_err()
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_are_audited_as_a_count() {
    let (broker, gk, _dir) = start_config(|c| c.max_connections = 2).await;
    let addr = broker.local_addr();
    let _a = Client::connect(addr, "a", "alice").await;
    let _b = Client::connect(addr, "b", "bob").await;
    for i in 3..=20 {
        let (level, code) = if i % 2 == 0 { (4, 3) } else { (5, 0x88) };
        let got = raw_code(addr, level, &format!("c{i}"), Some("ha"), Some("ha-pw")).await;
        assert_eq!(got, code, "connection {i}");
    }
    // taking over an existing client id is not a new session, so not refused or counted
    let (code, _s) = RawConnect {
        level: 4,
        client_id: "a",
        user: Some("alice"),
        password: Some("alice-pw"),
        will: None,
    }
    .send(addr)
    .await;
    assert_eq!(code, 0);
    // the first refusal is recorded at once
    assert!(
        eventually(|| gk
            .events()
            .iter()
            .any(|e| matches!(e, AuditEvent::ConnectionsRefused { .. })))
        .await
    );
    broker.shutdown().await;
    let rows: Vec<(u64, usize)> = gk
        .events()
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::ConnectionsRefused {
                count,
                limit,
                last_peer,
                ..
            } => {
                assert!(last_peer.ip().is_loopback());
                Some((count, limit))
            }
            _ => None,
        })
        .collect();
    assert!(
        (1..=3).contains(&rows.len()),
        "one row for the first refusal, one per interval after: {rows:?}"
    );
    assert_eq!(rows.iter().map(|(count, _)| count).sum::<u64>(), 18);
    assert!(rows.iter().all(|(_, limit)| *limit == 2));
    // and none of them became a per-connection row
    assert!(gk.connect_codes("c3").is_empty());
}

/// Connect as alice with client id `client_id` (raw, MQTT 3.1.1), then publish `publishes`
/// QoS 0 messages to her tree in the same write; returns the CONNACK code and the socket.
async fn alice_connects_and_publishes(
    addr: SocketAddr,
    client_id: &str,
    publishes: usize,
) -> (u8, TcpStream) {
    let mut bytes = RawConnect {
        level: 4,
        client_id,
        user: Some("alice"),
        password: Some("alice-pw"),
        will: None,
    }
    .encode();
    for _ in 0..publishes {
        bytes.extend(raw_publish("owntracks/alice/phone", b"x"));
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut ack = [0u8; 4];
    timeout(Duration::from_secs(30), s.read_exact(&mut ack))
        .await
        .expect("CONNACK timeout")
        .unwrap();
    (ack[3], s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_refused_after_authentication_does_not_own_the_client_id() {
    // rmqtt can still refuse a CONNECT our authentication hook allowed. Here: alice's sessions
    // stall in a publish (a consumer that never reads), so each reconnect waits 5 s for
    // rmqtt's kick of the previous session; a CONNECT queued behind two such kicks waits
    // longer than its turn (8 s) and finds rmqtt's per-client-id lock taken: CONNACK 3. That
    // CONNECT's identity must not become the owner of the client id, or bob could take
    // alice's session next. Whether a reconnect's new session stalls before the next kick
    // reaches it is a race, so several reconnects queue up, and the whole is retried.
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    for attempt in 0..3 {
        let client_id = format!("victim-{attempt}");
        let stall = broker.bus().consume("owntracks/alice/#", 1);
        let (code, first) = alice_connects_and_publishes(addr, &client_id, 2).await;
        assert_eq!(code, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut reconnects = Vec::new();
        for _ in 0..6 {
            let id = client_id.clone();
            reconnects.push(tokio::spawn(async move {
                alice_connects_and_publishes(addr, &id, 1).await
            }));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (last, _s) = alice_connects_and_publishes(addr, &client_id, 0).await;
        // let the stalled sessions go, and the reconnects finish
        drop(stall);
        let mut sockets = vec![first];
        for r in reconnects {
            sockets.push(r.await.unwrap().1);
        }
        if last != 3 {
            eprintln!("attempt {attempt}: the last CONNECT got {last}, not 3; again");
            continue;
        }
        // alice's session (a reconnect's) is there: bob may not take it
        assert_eq!(
            raw_code(addr, 4, &client_id, Some("bob"), Some("bob-pw")).await,
            5
        );
        assert!(
            eventually(|| gk.connect_codes(&client_id).last() == Some(&5)).await,
            "{:?}",
            gk.connect_codes(&client_id)
        );
        drop(sockets);
        broker.shutdown().await;
        return;
    }
    panic!("no CONNECT was refused after authentication in 3 attempts");
}

// ---------------------------------------------------------------- issue 12: commit before ack

/// How long a held message is watched for an acknowledgement that must not come.
const HOLD: Duration = Duration::from_millis(400);

async fn recv_delivery(rx: &mut mpsc::Receiver<Delivery>) -> Delivery {
    timeout(WAIT, rx.recv())
        .await
        .expect("no delivery in time")
        .expect("acked consumer closed")
}

/// Packets `client` receives within `quiet` (an error ends the list).
async fn packets_within(client: &mut Client, quiet: Duration) -> Vec<Result<Packet, String>> {
    let deadline = tokio::time::Instant::now() + quiet;
    let mut seen = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, client.events.recv()).await {
        let end = p.is_err();
        seen.push(p);
        if end {
            break;
        }
    }
    seen
}

fn is_ack(p: &Result<Packet, String>) -> bool {
    matches!(
        p,
        Ok(Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_))
    )
}

/// Wait for the PUBACK (QoS 1) or PUBREC (QoS 2) of the last publish of `client`.
async fn expect_ack(client: &mut Client, qos: QoS) {
    loop {
        match (client.next().await, qos) {
            (Some(Ok(Packet::PubAck(_))), QoS::AtLeastOnce) => return,
            (Some(Ok(Packet::PubRec(_))), QoS::ExactlyOnce) => return,
            (Some(Ok(p)), _) if !is_ack(&Ok(p.clone())) => {}
            (other, _) => panic!("expected the ack of a QoS {qos:?} publish, got {other:?}"),
        }
    }
}

/// Like [`Client::spawn`], but the event loop goes on after an error, so rumqttc reconnects
/// and (persistent session) resends what was not acknowledged, as a phone does.
fn spawn_reconnecting(options: MqttOptions) -> Client {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(p)) => Ok(p),
                Ok(Event::Outgoing(_)) => continue,
                Err(e) => Err(e.to_string()),
            };
            let failed = event.is_err();
            if tx.send(event).is_err() {
                return;
            }
            if failed {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    Client {
        client,
        events,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos_1_or_2_publish_is_acknowledged_only_after_the_acked_consumer_commits() {
    let (broker, gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut deliveries = broker
        .bus()
        .consume_acked("owntracks/#", 8, Origins::CLIENTS);
    let mut watcher = Client::connect(addr, "watcher", "admin").await;
    watcher.subscribe("owntracks/#", QoS::AtLeastOnce).await;
    let mut phone = Client::connect(addr, "phone", "alice").await;

    for (qos, payload) in [(QoS::AtLeastOnce, "one"), (QoS::ExactlyOnce, "two")] {
        phone
            .client
            .publish("owntracks/alice/phone", qos, false, payload)
            .await
            .unwrap();
        let delivery = recv_delivery(&mut deliveries).await;
        assert_eq!(
            (
                &delivery.inbound.payload[..],
                delivery.inbound.qos,
                &delivery.inbound.identity,
                delivery.ack.is_awaited()
            ),
            (payload.as_bytes(), qos as u8, &gk.identity("alice"), true)
        );
        // held by the consumer: no PUBACK / PUBREC, and no subscriber has it yet
        let seen = packets_within(&mut phone, HOLD).await;
        assert!(seen.iter().all(|p| p.is_ok() && !is_ack(p)), "{seen:?}");
        assert!(
            watcher.next_publish_within(Duration::ZERO).await.is_none(),
            "forwarded before commit"
        );

        delivery.ack.commit();
        timeout(Duration::from_secs(1), expect_ack(&mut phone, qos))
            .await
            .expect("no prompt ack after commit");
        assert_eq!(
            &watcher.expect_publish().await.payload[..],
            payload.as_bytes()
        );
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_not_acknowledged_and_the_resent_message_comes_again() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut deliveries = broker
        .bus()
        .consume_acked("owntracks/#", 8, Origins::CLIENTS);
    let mut o = options(addr, "phone", "alice");
    o.set_clean_session(false);
    let mut phone = spawn_reconnecting(o);
    phone.expect_connack().await;
    phone
        .client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "p1")
        .await
        .unwrap();

    let first = recv_delivery(&mut deliveries).await;
    first.ack.fail("disk full");
    // the connection ends without a PUBACK ...
    loop {
        match phone.next().await {
            Some(Err(_)) => break,
            Some(Ok(p)) => assert!(!is_ack(&Ok(p.clone())), "acknowledged: {p:?}"),
            None => panic!("still connected after a failed commit"),
        }
    }
    // ... the phone reconnects to its session (retrying, as phones do: rmqtt may refuse a
    // CONNECT that races the end of the old connection) and sends the message again
    loop {
        match phone.next().await {
            Some(Ok(Packet::ConnAck(ack))) => {
                assert!(ack.session_present);
                break;
            }
            Some(Err(_)) => {}
            other => panic!("expected a CONNACK, got {other:?}"),
        }
    }
    let again = recv_delivery(&mut deliveries).await;
    assert_eq!(
        (again.inbound.topic.as_str(), &again.inbound.payload[..]),
        ("owntracks/alice/phone", &b"p1"[..])
    );
    again.ack.commit();
    expect_puback(&mut phone).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_ack_or_no_answer_in_time_refuses_the_publish() {
    let (broker, _gk, _dir) = start_config(|c| c.commit_timeout = Duration::from_millis(300)).await;
    let addr = broker.local_addr();
    let mut deliveries = broker
        .bus()
        .consume_acked("owntracks/#", 8, Origins::CLIENTS);

    // the consumer drops the ack without answering
    let mut phone = Client::connect(addr, "phone", "alice").await;
    phone
        .client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "dropped")
        .await
        .unwrap();
    drop(recv_delivery(&mut deliveries).await);
    let seen = packets_within(&mut phone, WAIT).await;
    assert!(
        matches!(seen.last(), Some(Err(_))) && !seen.iter().any(is_ack),
        "{seen:?}"
    );

    // the consumer holds the ack past the commit timeout; a late commit changes nothing
    // (another client id: rmqtt refuses a CONNECT that races the end of its old session)
    let mut phone = Client::connect(addr, "phone-2", "alice").await;
    phone
        .client
        .publish("owntracks/alice/phone", QoS::ExactlyOnce, false, "late")
        .await
        .unwrap();
    let held = recv_delivery(&mut deliveries).await;
    let seen = packets_within(&mut phone, WAIT).await;
    assert!(
        matches!(seen.last(), Some(Err(_))) && !seen.iter().any(is_ack),
        "{seen:?}"
    );
    held.ack.commit();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_publishes_are_delivered_without_waiting_for_the_commit() {
    // A long commit timeout: a QoS 0 publish that waited would block the connection.
    let (broker, _gk, _dir) = start_config(|c| c.commit_timeout = Duration::from_secs(60)).await;
    let addr = broker.local_addr();
    let mut deliveries = broker
        .bus()
        .consume_acked("owntracks/#", 8, Origins::CLIENTS);
    let mut watcher = Client::connect(addr, "watcher", "admin").await;
    watcher.subscribe("owntracks/#", QoS::AtMostOnce).await;
    let mut phone = Client::connect(addr, "phone", "alice").await;
    for payload in ["a", "b"] {
        phone
            .client
            .publish("owntracks/alice/phone", QoS::AtMostOnce, false, payload)
            .await
            .unwrap();
    }
    let a = recv_delivery(&mut deliveries).await;
    assert!(!a.ack.is_awaited());
    // "a" is unanswered, yet "b" arrives and subscribers get both
    let b = recv_delivery(&mut deliveries).await;
    assert_eq!(
        (&a.inbound.payload[..], &b.inbound.payload[..]),
        (&b"a"[..], &b"b"[..])
    );
    assert_eq!(&watcher.expect_publish().await.payload[..], b"a");
    assert_eq!(&watcher.expect_publish().await.payload[..], b"b");
    // and the connection is free for a QoS 1 publish, acknowledged at its own commit
    phone
        .client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "c")
        .await
        .unwrap();
    let c = recv_delivery(&mut deliveries).await;
    assert!(c.ack.is_awaited());
    c.ack.commit();
    expect_puback(&mut phone).await;
    a.ack.commit();
    drop(b);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_message_of_one_client_does_not_delay_another_clients_puback() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut deliveries = broker
        .bus()
        .consume_acked("owntracks/#", 8, Origins::CLIENTS);
    let mut alice = Client::connect(addr, "alice-phone", "alice").await;
    let mut bob = Client::connect(addr, "bob-phone", "bob").await;
    alice
        .client
        .publish("owntracks/alice/phone", QoS::AtLeastOnce, false, "slow")
        .await
        .unwrap();
    let held = recv_delivery(&mut deliveries).await;
    assert_eq!(held.inbound.client_id, "alice-phone");

    bob.client
        .publish("owntracks/bob/phone", QoS::AtLeastOnce, false, "fast")
        .await
        .unwrap();
    let quick = recv_delivery(&mut deliveries).await;
    assert_eq!(quick.inbound.client_id, "bob-phone");
    quick.ack.commit();
    timeout(Duration::from_secs(1), expect_puback(&mut bob))
        .await
        .expect("bob's PUBACK waited for alice's commit");
    let seen = packets_within(&mut alice, Duration::from_millis(100)).await;
    assert!(!seen.iter().any(is_ack), "{seen:?}");

    held.ack.commit();
    expect_puback(&mut alice).await;
    broker.shutdown().await;
}

/// A QoS 1 PUBLISH with packet id `id` (MQTT 5: with an empty property list).
fn raw_publish_qos1(level: u8, topic: &str, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    assert!(body.len() < 128);
    let mut packet = vec![0x32, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

/// The next packet on `s` as (first byte, body); `None` when the server closed the socket.
async fn raw_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut first = [0u8; 1];
        if s.read_exact(&mut first).await.is_err() {
            return None;
        }
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.ok()?;
            len |= usize::from(b[0] & 0x7f) << shift;
            shift += 7;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.ok()?;
        Some((first[0], body))
    };
    timeout(WAIT, read)
        .await
        .expect("socket neither sent nor closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_wire_puback_follows_the_commit_and_a_failure_sends_none() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut deliveries = broker
        .bus()
        .consume_acked("owntracks/#", 8, Origins::CLIENTS);
    for level in [4u8, 5] {
        let client_id = format!("raw-{level}");
        let (code, mut s) = RawConnect {
            level,
            client_id: &client_id,
            user: Some("alice"),
            password: Some("alice-pw"),
            will: None,
        }
        .send(addr)
        .await;
        assert_eq!(code, 0);

        // committed: PUBACK for packet 7 (MQTT 5: reason "success", possibly left out)
        s.write_all(&raw_publish_qos1(level, "owntracks/alice/p", 7, b"ok"))
            .await
            .unwrap();
        let delivery = recv_delivery(&mut deliveries).await;
        let mut byte = [0u8; 1];
        assert!(
            timeout(HOLD, s.read(&mut byte)).await.is_err(),
            "level {level}: the server wrote before the commit"
        );
        delivery.ack.commit();
        let (kind, body) = raw_packet(&mut s).await.expect("closed instead of PUBACK");
        assert_eq!((kind, &body[..2]), (0x40, &[0u8, 7][..]), "level {level}");
        assert!(body.len() == 2 || body[2] == 0, "level {level}: {body:?}");

        // failed: no PUBACK, the connection closes (rmqtt 0.24 closes the socket before it
        // would write an MQTT 5 DISCONNECT, so both levels just see the close)
        s.write_all(&raw_publish_qos1(level, "owntracks/alice/p", 8, b"no"))
            .await
            .unwrap();
        recv_delivery(&mut deliveries).await.ack.fail("disk full");
        assert_eq!(raw_packet(&mut s).await, None, "level {level}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wills_and_app_publishes_reach_acked_consumers_without_anyone_waiting() {
    let (broker, _gk, _dir) = start_config(|c| c.commit_timeout = Duration::from_secs(60)).await;
    let addr = broker.local_addr();
    let bus = broker.bus();
    let mut deliveries = bus.consume_acked("owntracks/#", 8, Origins::ALL);

    // a QoS 1 app publish returns while its delivery is unanswered
    timeout(
        WAIT,
        bus.publish(
            "owntracks/alice/phone/cmd",
            Bytes::from_static(b"cmd"),
            1,
            false,
        ),
    )
    .await
    .expect("the app publish waited for the consumer")
    .unwrap();
    let app = recv_delivery(&mut deliveries).await;
    assert_eq!(
        (app.inbound.origin, app.inbound.qos, app.ack.is_awaited()),
        (Origin::App, 1, false)
    );

    // a QoS 1 will, sent when the socket just closes: nobody waits for it either
    let mut connect = RawConnect {
        level: 4,
        client_id: "alice-will",
        user: Some("alice"),
        password: Some("alice-pw"),
        will: Some(("owntracks/alice/phone", b"lwt")),
    }
    .encode();
    assert_eq!(connect[9] & 0x04, 0x04, "connect flags not where expected");
    connect[9] |= 0x08; // will QoS 1
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(&connect).await.unwrap();
    let mut connack = [0u8; 4];
    timeout(WAIT, sock.read_exact(&mut connack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    drop(sock);
    let will = recv_delivery(&mut deliveries).await;
    assert_eq!(
        (
            will.inbound.origin,
            will.inbound.qos,
            &will.inbound.payload[..],
            will.ack.is_awaited()
        ),
        (Origin::Will, 1, &b"lwt"[..], false)
    );
    app.ack.commit();
    will.ack.commit();
    broker.shutdown().await;
}

/// Not a correctness test: `cargo test --release -p porchlight-broker --test broker
/// acked_ingest_throughput -- --ignored --nocapture` prints how many QoS 1 publishes per
/// second pass commit-before-ack, for a few connection counts, with a consumer that answers
/// in batches every `BATCH` (standing in for a group commit). One connection carries one
/// publish at a time, so its rate is about 1 / (batch wait + round trip).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn acked_ingest_throughput() {
    const BATCH: Duration = Duration::from_millis(2);
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let mut deliveries = broker
        .bus()
        .consume_acked("owntracks/+/+", 4096, Origins::CLIENTS);
    let committer = tokio::spawn(async move {
        let mut batch = Vec::new();
        let mut tick = tokio::time::interval(BATCH);
        loop {
            tokio::select! {
                d = deliveries.recv() => match d {
                    Some(d) => batch.push(d.ack),
                    None => return,
                },
                _ = tick.tick() => batch.drain(..).for_each(|a| a.commit()),
            }
        }
    });
    let payload = r#"{"_type":"location","acc":12,"alt":40,"batt":81,"lat":52.520008,"lon":13.404954,"tid":"ph","tst":1700000000}"#;
    for clients in [1usize, 16, 128] {
        let per_client = (2000 / clients).max(20);
        let mut pubs = Vec::new();
        for c in 0..clients {
            let mut o = options(addr, &format!("bench-{clients}-{c}"), "admin");
            o.set_inflight(100);
            pubs.push(Client::spawn(o));
        }
        for c in &mut pubs {
            c.expect_connack().await;
        }
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        for (c, mut client) in pubs.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_client {
                    client
                        .client
                        .publish(
                            format!("owntracks/u{c}/phone"),
                            QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .await
                        .unwrap();
                }
                for _ in 0..per_client {
                    expect_puback(&mut client).await;
                }
                client
            }));
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        let total = clients * per_client;
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{clients} connections: {total} QoS 1 publishes acked in {secs:.2}s = {:.0}/s",
            total as f64 / secs
        );
        for c in done {
            c.disconnect().await;
        }
    }
    broker.shutdown().await;
    committer.abort();
}

/// A certificate and key given as PEM text: the TLS listener takes them from memory, writes no
/// file (and removes what an older version's crash left), and speaks TLS with that certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_identity_in_memory_leaves_no_key_file_behind() {
    init_logs();
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let data = tempfile::tempdir().unwrap();
    // What an older version's crash between write and delete would have left.
    std::fs::write(data.path().join("tls-listener.key"), "stale").unwrap();
    std::fs::write(data.path().join("tls-listener.pem"), "stale").unwrap();
    let mut config = BrokerConfig::new("127.0.0.1:0".parse().unwrap(), data.path().to_path_buf());
    config.tls = Some(porchlight_broker::TlsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        identity: porchlight_broker::TlsIdentity::Pem {
            cert_chain_pem: std::fs::read_to_string(pki.path().join("server.pem")).unwrap(),
            key_pem: std::fs::read_to_string(pki.path().join("server.key"))
                .unwrap()
                .into(),
        },
        ca_path: None,
        require_client_cert: false,
    });
    let broker = Broker::start(config, FakeGatekeeper::new()).await.unwrap();
    for name in ["tls-listener.key", "tls-listener.pem"] {
        assert!(!data.path().join(name).exists(), "{name} left behind");
    }
    let port = broker.tls_local_addr().unwrap().port();
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-CAfile", &pki.path().join("ca.pem").to_string_lossy()])
        .args(["-verify_return_error", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Verification: OK"), "{text}");
    broker.shutdown().await;
}

/// An MQTT 5 PUBLISH (QoS 0) to `topic` with a Topic Alias property of `alias`.
fn raw_v5_publish_with_alias(topic: &str, alias: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    body.extend_from_slice(&[3, 0x23]); // properties: 3 bytes, Topic Alias (0x23)
    body.extend_from_slice(&alias.to_be_bytes());
    body.extend_from_slice(payload);
    let mut packet = vec![0x30, u8::try_from(body.len()).unwrap()];
    packet.extend_from_slice(&body);
    packet
}

/// How a connection ended after a protocol error.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The server sent DISCONNECT with this reason code.
    Disconnect(u8),
    /// The server closed the connection without a DISCONNECT.
    Closed,
    /// The connection was still open after [`WAIT`].
    StillOpen,
}

/// Reads packets until the server's DISCONNECT or the end of the connection.
async fn ending(s: &mut TcpStream) -> Ending {
    loop {
        let mut kind = [0u8; 1];
        match timeout(WAIT, s.read_exact(&mut kind)).await {
            Err(_) => return Ending::StillOpen,
            Ok(Err(_)) => return Ending::Closed,
            Ok(Ok(_)) => {}
        }
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut byte = [0u8; 1];
            if s.read_exact(&mut byte).await.is_err() {
                return Ending::Closed;
            }
            len |= usize::from(byte[0] & 0x7f) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut rest = vec![0u8; len];
        if s.read_exact(&mut rest).await.is_err() {
            return Ending::Closed;
        }
        if kind[0] == 0xE0 {
            return Ending::Disconnect(rest.first().copied().unwrap_or(0));
        }
    }
}

#[tokio::test]
async fn a_topic_alias_the_server_did_not_announce_ends_the_connection() {
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    // The broker announces no topic aliases (maximum 0): 1 is above it, and 0 is never valid.
    for (alias, client_id) in [(1u16, "alias-1"), (0, "alias-0")] {
        let connect = RawConnect {
            level: 5,
            client_id,
            user: Some("admin"),
            password: Some("admin-pw"),
            will: None,
        };
        let (code, mut s) = connect.send(addr).await;
        assert_eq!(code, 0, "CONNACK");
        s.write_all(&raw_v5_publish_with_alias("client_test5/x", alias, b"hi"))
            .await
            .unwrap();
        // MQTT 5 wants DISCONNECT 0x94 first. rmqtt 0.24 shuts the socket down before it
        // writes a server DISCONNECT (ADR 0019), so for now the connection just ends.
        let end = ending(&mut s).await;
        assert!(
            matches!(end, Ending::Disconnect(0x94) | Ending::Closed),
            "topic alias {alias}: {end:?}"
        );
    }
    // mosquitto's client sends an alias when asked to, whatever the server announced.
    let out = run_tool(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "-V",
            "mqttv5",
            "-u",
            "admin",
            "-P",
            "admin-pw",
            "-t",
            "client_test5/x",
            "-D",
            "publish",
            "topic-alias",
            "1",
            "-q",
            "1",
            "-m",
            "hi",
        ],
    )
    .await;
    assert!(
        !out.status.success(),
        "mosquitto_pub with an unannounced topic alias succeeded"
    );
    broker.shutdown().await;
}

fn v5_client(addr: SocketAddr, client_id: &str, user: &str) -> rumqttc::v5::AsyncClient {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials(user, format!("{user}-pw"));
    let (client, mut events) = rumqttc::v5::AsyncClient::new(o, 100);
    let client_id = client_id.to_owned();
    let received = v5_received();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            let mut r = received.lock().unwrap();
            match event {
                rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Publish(p)) => {
                    r.entry(client_id.clone())
                        .or_default()
                        .push(String::from_utf8_lossy(&p.payload).into_owned());
                }
                rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::SubAck(a)) => {
                    r.entry(format!("{client_id}/suback"))
                        .or_default()
                        .push(format!("{:?}", a.return_codes));
                }
                _ => {}
            }
        }
    });
    client
}

/// What each v5 client received, by client id.
type Received = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Payloads (and SUBACK codes, under `<client>/suback`) received by the v5 clients.
fn v5_received() -> Received {
    static RECEIVED: std::sync::OnceLock<Received> = std::sync::OnceLock::new();
    RECEIVED.get_or_init(Arc::default).clone()
}

fn v5_got(key: &str) -> Vec<String> {
    v5_received()
        .lock()
        .unwrap()
        .get(key)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_shared_subscription_gives_each_message_to_exactly_one_member() {
    use rumqttc::v5::mqttbytes::QoS as Qos5;
    let (broker, _gk, _dir) = start().await;
    let addr = broker.local_addr();
    let members = [
        v5_client(addr, "share-a", "admin"),
        v5_client(addr, "share-b", "admin"),
    ];
    for m in &members {
        m.subscribe("$share/g1/client_test5/x", Qos5::AtMostOnce)
            .await
            .unwrap();
    }
    // A user is not allowed a shared subscription, not even to their own topics.
    let alice = v5_client(addr, "share-alice", "alice");
    alice
        .subscribe("$share/g1/owntracks/alice/#", Qos5::AtMostOnce)
        .await
        .unwrap();
    assert!(
        eventually(|| ["share-a", "share-b", "share-alice"]
            .iter()
            .all(|c| !v5_got(&format!("{c}/suback")).is_empty()))
        .await,
        "no SUBACKs"
    );
    assert_eq!(v5_got("share-a/suback"), ["[Success(AtMostOnce)]"]);
    assert_eq!(v5_got("share-alice/suback"), ["[NotAuthorized]"]);

    let publisher = v5_client(addr, "share-pub", "admin");
    for i in 0..10 {
        publisher
            .publish("client_test5/x", Qos5::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    assert!(
        eventually(|| v5_got("share-a").len() + v5_got("share-b").len() >= 10).await,
        "the group did not get the messages: {:?} {:?}",
        v5_got("share-a"),
        v5_got("share-b")
    );
    // The literal `$share/…` is no topic: nobody gets a publish to it.
    publisher
        .publish(
            "$share/g1/client_test5/x",
            Qos5::AtLeastOnce,
            false,
            "literal",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a, b) = (v5_got("share-a"), v5_got("share-b"));
    let mut all: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
    all.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(all, want, "each message exactly once across the group");
    assert!(
        !a.is_empty() && !b.is_empty(),
        "one member got everything: {a:?} {b:?}"
    );
    broker.shutdown().await;
}

/// Connections accepted on local `port` that a process still holds (`/proc/net/tcp`: not the
/// listener, and with an inode; a socket closed by its owner keeps its line without one until
/// the peer closes too).
fn held_connections(port: u16) -> usize {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f[1].rsplit(':').next().unwrap();
            u16::from_str_radix(local_port, 16).unwrap() == port && f[3] != "0A" && f[9] != "0"
        })
        .count()
}

/// When the broker ends a TLS session (here: the user is kicked), its relay ends too, even if
/// the client never closes its side, as a phone that vanished behind NAT does not.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_relay_ends_with_its_session_though_the_client_stays_silent() {
    use rustls::pki_types::pem::PemObject;
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let broker = start_with_tls_files(d, false).await;
    let addr = broker.tls_local_addr().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(d.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    ));
    assert_eq!(held_connections(addr.port()), 0);
    let mut clients = Vec::new();
    for i in 0..5 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let connect = RawConnect {
            level: 4,
            client_id: &format!("silent-{i}"),
            user: Some("alice"),
            password: Some("alice-pw"),
            will: None,
        };
        tls.write_all(&connect.encode()).await.unwrap();
        let mut connack = [0u8; 4];
        timeout(WAIT, tls.read_exact(&mut connack))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK");
        clients.push(tls);
    }
    assert_eq!(
        held_connections(addr.port()),
        5,
        "the fronts' accepted sockets"
    );
    assert_eq!(broker.disconnect_user(1).await, 5);
    // The clients never close their side; the front lets go of its side all the same.
    assert!(
        eventually(|| held_connections(addr.port()) == 0).await,
        "the relays outlived their sessions: {} accepted sockets still held",
        held_connections(addr.port())
    );
    drop(clients);
    broker.shutdown().await;
}
