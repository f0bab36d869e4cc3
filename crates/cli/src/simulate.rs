//! `porchlight simulate`: an OwnTracks traffic generator against a running Porchlight.
//!
//! It creates its own users and devices through the HTTP API with an admin API token
//! (`POST /api/users`, `POST /api/devices`), then drives N phones moving along smooth random
//! tracks at a total rate R: valid OwnTracks JSON (a card at start, locations with
//! `lat`/`lon`/`tst`/`acc`/`batt`/`vel`/`cog`/`tid`, now and then a region transition), over
//! MQTT (rumqttc, QoS 1, `clean_session = false`, an `lwt` as the will) or HTTP mode
//! (`POST /pub` with Basic auth). A point counts as acknowledged on its PUBACK or its 2xx, which
//! Porchlight sends only after the commit (ADR 0008).
//!
//! Bounded by design: it stops by itself after `--duration` (at most an hour), and it only
//! talks to the address it is given (loopback by default). Device keys stay in memory; they
//! are never printed or logged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Value, json};

/// The longest run allowed, so a forgotten simulation cannot load a server for days.
const MAX_DURATION_S: u64 = 3600;
/// The largest total rate allowed (points/s).
const MAX_RATE: f64 = 100_000.0;
const MAX_DEVICES: usize = 10_000;
/// Phones per simulated user (a family's phones share one account).
const DEVICES_PER_USER: usize = 4;
/// A 1×1 PNG, the card's picture.
const FACE: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Simulated phones (each its own device key and connection).
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Total location rate over all phones, points per second.
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// Publish over MQTT (the default).
    #[arg(long, conflicts_with = "http")]
    mqtt: bool,
    /// Publish over HTTP mode (`POST /pub`).
    #[arg(long)]
    http: bool,
    /// Seconds to run; at most 3600.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// The server's HTTP address (API and `/pub`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// MQTT host; defaults to the host of --url.
    #[arg(long)]
    mqtt_host: Option<String>,
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// An admin API token (`plt_…`), used to create the simulated users and devices.
    #[arg(long, env = "PORCHLIGHT_TOKEN", hide_env_values = true)]
    token: String,
}

/// Counters shared by every phone task; the progress line reads them.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
}

/// One simulated phone: its login and where it is.
struct Phone {
    user: String,
    device: String,
    key: String,
    tid: String,
    track: Track,
}

/// Acknowledged locations of one phone (printed at the end, per device).
struct PhoneReport {
    user: String,
    device: String,
    acked_locations: u64,
}

pub async fn simulate(args: SimulateArgs) -> Result<()> {
    if args.duration == 0 || args.duration > MAX_DURATION_S {
        bail!("--duration must be 1 to {MAX_DURATION_S} seconds");
    }
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        bail!("--rate must be above 0 and at most {MAX_RATE}");
    }
    if args.devices == 0 || args.devices > MAX_DEVICES {
        bail!("--devices must be 1 to {MAX_DEVICES}");
    }
    let base = reqwest::Url::parse(&args.url).context("--url is not a URL")?;
    let host = base
        .host_str()
        .context("--url has no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let mqtt_host = args.mqtt_host.clone().unwrap_or(host);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    let phones = create_phones(&http, &base, &args.token, args.devices).await?;
    let mode = if args.http { "HTTP /pub" } else { "MQTT" };
    println!(
        "simulating {} phone(s) over {mode}, {} points/s in all, for {} s",
        phones.len(),
        args.rate,
        args.duration
    );
    let counters = Arc::new(Counters::default());
    let period = Duration::from_secs_f64(phones.len() as f64 / args.rate);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for (i, phone) in phones.into_iter().enumerate() {
        let counters = counters.clone();
        // Phones start spread over one period so the load is even.
        let offset = period.mul_f64(i as f64 / args.devices as f64);
        if args.http {
            let (http, base) = (http.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                run_http_phone(phone, http, base, period, offset, deadline, counters).await
            }));
        } else {
            let (host, port) = (mqtt_host.clone(), args.mqtt_port);
            tasks.push(tokio::spawn(async move {
                run_mqtt_phone(phone, host, port, period, offset, deadline, counters).await
            }));
        }
    }

    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last_acked = 0;
    while tokio::time::Instant::now() < deadline {
        ticker.tick().await;
        let acked = counters.acked.load(Ordering::Relaxed);
        println!(
            "{:>5.0}s sent {} acked {} rate {}/s errors {}",
            start.elapsed().as_secs_f64(),
            counters.sent.load(Ordering::Relaxed),
            acked,
            acked - last_acked,
            counters.errors.load(Ordering::Relaxed)
        );
        last_acked = acked;
    }
    let mut reports = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => reports.push(r),
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("a phone task failed: {e}");
            }
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let acked = counters.acked.load(Ordering::Relaxed);
    println!(
        "done: sent {} acked {} ({:.0}/s) errors {}",
        counters.sent.load(Ordering::Relaxed),
        acked,
        acked as f64 / secs,
        counters.errors.load(Ordering::Relaxed)
    );
    for r in reports {
        println!(
            "device {}/{} acked_locations {}",
            r.user, r.device, r.acked_locations
        );
    }
    Ok(())
}

/// Creates the users (one per [`DEVICES_PER_USER`] phones, random passwords never shown)
/// and one device per phone, named after this run so runs do not collide.
async fn create_phones(
    http: &reqwest::Client,
    base: &reqwest::Url,
    token: &str,
    devices: usize,
) -> Result<Vec<Phone>> {
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or(0);
    let mut rng = Rng::new(u64::try_from(run).unwrap_or(1));
    let mut phones = Vec::with_capacity(devices);
    let users = devices.div_ceil(DEVICES_PER_USER);
    for u in 0..users {
        let user = format!("sim{run}-{u}");
        let response = http
            .post(base.join("/api/users")?)
            .bearer_auth(token)
            .json(&json!({ "username": user, "role": "user" }))
            .send()
            .await
            .with_context(|| format!("creating user {user} at {base}"))?;
        if !response.status().is_success() {
            bail!(
                "creating user {user}: HTTP {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        for d in 0..DEVICES_PER_USER.min(devices - u * DEVICES_PER_USER) {
            let device = format!("phone{d}");
            let response = http
                .post(base.join("/api/devices")?)
                .bearer_auth(token)
                .json(&json!({ "name": device, "username": user }))
                .send()
                .await
                .with_context(|| format!("creating device {user}/{device}"))?;
            if !response.status().is_success() {
                bail!(
                    "creating device {user}/{device}: HTTP {}",
                    response.status()
                );
            }
            let body: Value = response.json().await?;
            let key = body["mqtt_password"]
                .as_str()
                .context("the device answer has no mqtt_password")?
                .to_owned();
            phones.push(Phone {
                tid: format!("{}{}", (b'a' + (u % 26) as u8) as char, d),
                track: Track::new(&mut rng),
                user: user.clone(),
                device,
                key,
            });
        }
    }
    Ok(phones)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What a phone publishes next, with its topic suffix (`""`, `/event`, `/info`).
struct Publish {
    suffix: &'static str,
    location: bool,
    payload: String,
}

impl Phone {
    fn card(&self) -> Publish {
        Publish {
            suffix: "/info",
            location: false,
            payload: json!({ "_type": "card", "name": format!("{} {}", self.user, self.device), "face": FACE, "tid": self.tid })
                .to_string(),
        }
    }

    /// The next location, and now and then (about one in 50) a transition before it.
    fn next(&mut self) -> Vec<Publish> {
        let tst = self.track.step(unix_now());
        let mut out = Vec::with_capacity(2);
        if self.track.rng.below(50) == 0 {
            self.track.inside = !self.track.inside;
            let t = &self.track;
            out.push(Publish {
                suffix: "/event",
                location: false,
                payload: json!({
                    "_type": "transition", "event": if t.inside { "enter" } else { "leave" },
                    "desc": "Home", "rid": "simhome1", "wtst": 1_700_000_000, "t": "c",
                    "lat": t.lat, "lon": t.lon, "acc": 10, "tst": tst, "tid": self.tid,
                })
                .to_string(),
            });
        }
        let t = &self.track;
        out.push(Publish {
            suffix: "",
            location: true,
            payload: json!({
                "_type": "location", "lat": t.lat, "lon": t.lon, "tst": tst,
                "acc": 5 + t.rng_peek() % 20, "batt": t.batt,
                // Integers, as the apps send them.
                "vel": t.speed_kmh.round() as i64, "cog": t.heading.round() as i64, "tid": self.tid, "t": "u", "conn": "m",
            })
            .to_string(),
        });
        out
    }
}

/// A phone moving with gently changing heading and speed; `tst` strictly increases (a point
/// per second of phone time at most, so a fast rate never produces duplicates).
struct Track {
    rng: Rng,
    lat: f64,
    lon: f64,
    heading: f64,
    speed_kmh: f64,
    batt: i64,
    tst: i64,
    inside: bool,
}

impl Track {
    fn new(rng: &mut Rng) -> Track {
        let mut rng = Rng::new(rng.next_u64());
        Track {
            lat: 52.30 + rng.unit() * 0.1,
            lon: 4.85 + rng.unit() * 0.1,
            heading: rng.unit() * 360.0,
            speed_kmh: 5.0 + rng.unit() * 40.0,
            batt: 50 + i64::try_from(rng.below(50)).unwrap_or(0),
            tst: 0,
            inside: false,
            rng,
        }
    }

    fn step(&mut self, now: i64) -> i64 {
        let dt = if self.tst == 0 {
            1
        } else {
            (now - self.tst).max(1)
        };
        self.tst = now.max(self.tst + 1);
        self.heading = (self.heading + (self.rng.unit() - 0.5) * 30.0).rem_euclid(360.0);
        self.speed_kmh = (self.speed_kmh + (self.rng.unit() - 0.5) * 4.0).clamp(0.0, 90.0);
        let metres = self.speed_kmh / 3.6 * dt as f64;
        let rad = self.heading.to_radians();
        self.lat = (self.lat + metres * rad.cos() / 111_320.0).clamp(-89.0, 89.0);
        let lon_scale = 111_320.0 * self.lat.to_radians().cos().max(0.01);
        self.lon = (self.lon + metres * rad.sin() / lon_scale).clamp(-179.0, 179.0);
        if self.rng.below(100) == 0 {
            self.batt = (self.batt - 1).max(5);
        }
        self.tst
    }

    fn rng_peek(&self) -> u64 {
        self.rng.0 >> 59
    }
}

/// xorshift64*: enough randomness for tracks, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

async fn run_mqtt_phone(
    mut phone: Phone,
    host: String,
    port: u16,
    period: Duration,
    offset: Duration,
    deadline: tokio::time::Instant,
    counters: Arc<Counters>,
) -> PhoneReport {
    let topic = format!("owntracks/{}/{}", phone.user, phone.device);
    let mut options = MqttOptions::new(format!("{}-{}", phone.user, phone.device), host, port);
    options.set_credentials(phone.user.clone(), phone.key.clone());
    options.set_clean_session(false);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_last_will(LastWill::new(
        topic.clone(),
        json!({ "_type": "lwt", "tst": unix_now() }).to_string(),
        QoS::AtLeastOnce,
        false,
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    // Kinds of the publishes handed to the client, in order; each gets its packet id when it
    // goes out, and counts as acknowledged on its PUBACK.
    let queued = Arc::new(std::sync::Mutex::new(VecDeque::<bool>::new()));
    let acked_locations = Arc::new(AtomicU64::new(0));
    let events = {
        let (queued, acked_locations, counters) =
            (queued.clone(), acked_locations.clone(), counters.clone());
        tokio::spawn(async move {
            let mut by_pkid: HashMap<u16, bool> = HashMap::new();
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let location = queued
                            .lock()
                            .ok()
                            .and_then(|mut q| q.pop_front())
                            .unwrap_or(false);
                        by_pkid.insert(pkid, location);
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        counters.acked.fetch_add(1, Ordering::Relaxed);
                        if by_pkid.remove(&ack.pkid) == Some(true) {
                            acked_locations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("{topic}: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    };
    let base_topic = format!("owntracks/{}/{}", phone.user, phone.device);
    let publish = |o: Publish| {
        let (client, queued, counters) = (&client, &queued, &counters);
        let topic = format!("{base_topic}{}", o.suffix);
        async move {
            if let Ok(mut q) = queued.lock() {
                q.push_back(o.location);
            }
            match client
                .publish(topic, QoS::AtLeastOnce, false, o.payload)
                .await
            {
                Ok(()) => counters.sent.fetch_add(1, Ordering::Relaxed),
                Err(_) => counters.errors.fetch_add(1, Ordering::Relaxed),
            };
        }
    };
    let card = phone.card();
    publish(card).await;
    tokio::time::sleep(offset).await;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
        for o in phone.next() {
            publish(o).await;
        }
    }
    // Give the last publishes their PUBACKs, then leave cleanly (no will).
    let settle = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < settle
        && queued.lock().map(|q| !q.is_empty()).unwrap_or(false)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    settle_acks(&acked_locations, settle).await;
    let _ = client.disconnect().await;
    // A phone that cannot reach the server keeps retrying in its event loop: end it.
    let events_abort = events.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), events)
        .await
        .is_err()
    {
        events_abort.abort();
    }
    PhoneReport {
        user: phone.user,
        device: phone.device,
        acked_locations: acked_locations.load(Ordering::Relaxed),
    }
}

/// Waits until no more acknowledgements arrive (none for 300 ms) or `until`.
async fn settle_acks(acked: &AtomicU64, until: tokio::time::Instant) {
    let mut last = acked.load(Ordering::Relaxed);
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = acked.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
}

async fn run_http_phone(
    mut phone: Phone,
    http: reqwest::Client,
    base: reqwest::Url,
    period: Duration,
    offset: Duration,
    deadline: tokio::time::Instant,
    counters: Arc<Counters>,
) -> PhoneReport {
    let mut acked_locations = 0;
    let url = base.join("/pub");
    let (user, device, key) = (phone.user.clone(), phone.device.clone(), phone.key.clone());
    let post = |o: Publish| {
        let (http, url, counters) = (&http, &url, &counters);
        let (user, device, key) = (&user, &device, &key);
        async move {
            let Ok(url) = url.clone() else {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            counters.sent.fetch_add(1, Ordering::Relaxed);
            let response = http
                .post(url)
                .basic_auth(user, Some(key))
                .header("X-Limit-U", user.as_str())
                .header("X-Limit-D", device.as_str())
                .header("Content-Type", "application/json")
                .body(o.payload)
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => {
                    counters.acked.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Ok(r) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{user}/{device}: /pub answered {}", r.status());
                    false
                }
                Err(e) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{user}/{device}: /pub failed: {e}");
                    false
                }
            }
        }
    };
    let card = phone.card();
    post(card).await;
    tokio::time::sleep(offset).await;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
        for o in phone.next() {
            let location = o.location;
            if post(o).await && location {
                acked_locations += 1;
            }
        }
    }
    PhoneReport {
        user: phone.user,
        device: phone.device,
        acked_locations,
    }
}
