//! `porchlight-bench fuzz`: the long run of the OwnTracks input checks (the CI runs the same
//! properties with a few thousand proptest cases: `crates/domain/src/owntracks/proptests.rs`,
//! `crates/server/src/http/owntracks_pub.rs`).
//!
//! `--inputs` generated inputs (default 1,000,000), from a seeded xorshift generator so a run
//! can be repeated (`--seed`), each one of:
//! - arbitrary bytes (0..512) as a payload;
//! - a valid sample message (the shared samples) with 1..6 byte edits (flip, insert, delete,
//!   truncate; bytes that matter to JSON over-represented);
//! - a valid sample with one field replaced by an odd JSON value or removed;
//! - a bad sample (`bad-owntracks-payloads.txt`), as is or edited;
//! - an encrypted sample (the apps' secretbox), as is or with its ciphertext edited;
//! - a `/pub` request: arbitrary or edited `Authorization`, `X-Limit-U`/`X-Limit-D` header
//!   bytes and `?u=`/`?d=` values around a (possibly edited) sample body.
//!
//! Payloads go through `open_payload` (with and without a key, with the sample's topic kind
//! and none), `/pub` requests through `porchlight_server::check_pub_request` (every check the
//! handler makes before a lookup, then the ingest service's parser). Each call runs under
//! `catch_unwind`: a panic is counted and the run fails. Checked: every rejection has a
//! non-empty message (and a reason name, for payloads); every unedited valid sample is
//! accepted; every bad sample is rejected. Prints inputs/s, accepted/rejected counts and the
//! rejections by reason, and this process's CPU (it is the only process: the parser is what
//! it loads).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use anyhow::{Result, bail};
use porchlight_domain::owntracks::crypto::{self, SecretKey};
use porchlight_domain::owntracks::{OwnTracksTopic, Parsed, PayloadError, TopicKind, open_payload};
use porchlight_server::{PubInputError, check_pub_request};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::ingest::cpu_seconds;

const SAMPLES: &str = include_str!("../../domain/tests/fixtures/owntracks-messages.jsonl");
const BAD_PAYLOADS: &str = include_str!("../../domain/tests/fixtures/bad-owntracks-payloads.txt");

#[derive(clap::Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Inputs to generate.
    #[arg(long, default_value_t = 1_000_000)]
    inputs: u64,
    /// Generator seed (the same seed generates the same inputs).
    #[arg(long, default_value_t = 0x5EED_0F_0A7E)]
    seed: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// A byte, often one that matters to JSON.
    fn byte(&mut self) -> u8 {
        const JSON: &[u8] = b"{}[]\",:-.0123456789eE\\ntfu ";
        if self.next() & 1 == 0 {
            JSON[self.below(JSON.len())]
        } else {
            self.next() as u8
        }
    }

    fn edit(&mut self, mut bytes: Vec<u8>, edits: usize) -> Vec<u8> {
        for _ in 0..edits {
            let len = bytes.len();
            match self.below(4) {
                0 if len > 0 => {
                    let i = self.below(len);
                    bytes[i] = self.byte();
                }
                1 if len > 0 => {
                    bytes.remove(self.below(len));
                }
                2 => {
                    let b = self.byte();
                    bytes.insert(self.below(len + 1), b);
                }
                _ => bytes.truncate(self.below(len + 1)),
            }
        }
        bytes
    }

    fn json_value(&mut self) -> Value {
        match self.below(10) {
            0 => Value::Null,
            1 => Value::Bool(self.next() & 1 == 0),
            2 => Value::from(self.next() as i64),
            3 => Value::from(f64::from_bits(self.next())),
            4 => Value::from([90.000_001, -180.5, 1e300, 0.0, -0.0][self.below(5)]),
            5 => Value::from(String::from_utf8_lossy(&self.bytes(12)).into_owned()),
            6 => Value::from(
                ["enter", "leave", "location", "encrypted", "", "iVBORw0K"][self.below(6)],
            ),
            7 => Value::Array(
                (0..self.below(3))
                    .map(|_| Value::from(self.next() as i64))
                    .collect(),
            ),
            8 => serde_json::json!({"_type": "location", "lat": 1, "lon": 2, "tst": 3}),
            _ => Value::from(u64::MAX),
        }
    }
}

/// What the run found.
#[derive(Default)]
struct Tally {
    inputs: u64,
    accepted: u64,
    empty: u64,
    rejected: BTreeMap<String, u64>,
    panics: u64,
    failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        if self.failures.len() < 10 {
            self.failures.push(what);
        }
    }

    fn payload(&mut self, outcome: std::thread::Result<Result<Parsed, PayloadError>>, label: &str) {
        self.inputs += 1;
        match outcome {
            Err(_) => {
                self.panics += 1;
                self.fail(format!("{label}: the parser panicked"));
            }
            Ok(Ok(Parsed::Empty)) => self.empty += 1,
            Ok(Ok(Parsed::Message(_))) => self.accepted += 1,
            Ok(Err(e)) => {
                if e.to_string().trim().is_empty() || e.reason().is_empty() {
                    self.fail(format!("{label}: a rejection without a message: {e:?}"));
                }
                *self.rejected.entry(e.reason().to_owned()).or_default() += 1;
            }
        }
    }

    fn pub_request(
        &mut self,
        outcome: std::thread::Result<Result<(String, String, Parsed), PubInputError>>,
    ) {
        self.inputs += 1;
        match outcome {
            Err(_) => {
                self.panics += 1;
                self.fail("/pub: the checks panicked".into());
            }
            Ok(Ok((user, device, parsed))) => {
                if OwnTracksTopic::new(&user, &device, TopicKind::Device).is_err() {
                    self.fail(format!(
                        "/pub accepted an invalid target {user:?}/{device:?}"
                    ));
                }
                match parsed {
                    Parsed::Empty => self.empty += 1,
                    Parsed::Message(_) => self.accepted += 1,
                }
            }
            Ok(Err(e)) => {
                if e.to_string().trim().is_empty() {
                    self.fail(format!("/pub: a rejection without a message: {e:?}"));
                }
                let reason = match &e {
                    PubInputError::NoCredentials => "pub:no_credentials".to_owned(),
                    PubInputError::NotText(_) => "pub:not_text".to_owned(),
                    PubInputError::NoDevice => "pub:no_device".to_owned(),
                    PubInputError::BadName { .. } => "pub:bad_name".to_owned(),
                    PubInputError::Payload(p) => format!("pub:{}", p.reason()),
                };
                *self.rejected.entry(reason).or_default() += 1;
            }
        }
    }
}

fn samples() -> Result<Vec<(TopicKind, Vec<u8>)>> {
    let mut out = Vec::new();
    for line in SAMPLES.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        let topic = OwnTracksTopic::parse(v["topic"].as_str().unwrap_or_default())?;
        out.push((topic.kind(), serde_json::to_vec(&v["payload"])?));
    }
    Ok(out)
}

fn basic(user: &[u8], password: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let mut raw = user.to_vec();
    raw.push(b':');
    raw.extend_from_slice(password);
    let mut v = b"Basic ".to_vec();
    v.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(raw)
            .as_bytes(),
    );
    v
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let samples = samples()?;
    let bad: Vec<&[u8]> = BAD_PAYLOADS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::as_bytes)
        .collect();
    let key = SecretKey::from_passphrase("fuzz passphrase")?;
    // The fixed checks first: every sample accepted, every bad sample rejected.
    for (kind, bytes) in &samples {
        if !matches!(
            open_payload(bytes, Some(*kind), None),
            Ok(Parsed::Message(_))
        ) {
            bail!(
                "a valid sample is not accepted: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    for b in &bad {
        if open_payload(b, None, None).is_ok() {
            bail!("a bad sample is accepted: {}", String::from_utf8_lossy(b));
        }
    }
    // Panics are counted, not printed a million times.
    std::panic::set_hook(Box::new(|_| {}));

    let mut rng = Rng(args.seed | 1);
    let mut t = Tally::default();
    let cpu = cpu_seconds(std::process::id());
    let started = Instant::now();
    while t.inputs < args.inputs {
        let (kind, sample) = &samples[rng.below(samples.len())];
        match rng.below(6) {
            0 => {
                let bytes = rng.bytes(512);
                let k = [None, Some(*kind)][rng.below(2)];
                t.payload(
                    catch_unwind(|| open_payload(&bytes, k, None)),
                    "arbitrary bytes",
                );
            }
            1 => {
                let edits = 1 + rng.below(6);
                let bytes = rng.edit(sample.clone(), edits);
                let k = [None, Some(*kind)][rng.below(2)];
                t.payload(
                    catch_unwind(AssertUnwindSafe(|| open_payload(&bytes, k, Some(&key)))),
                    "edited sample",
                );
            }
            2 => {
                let mut v: Value = serde_json::from_slice(sample)?;
                if let Value::Object(map) = &mut v {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    let field = keys[rng.below(keys.len())].clone();
                    if rng.below(4) == 0 {
                        map.remove(&field);
                    } else {
                        map.insert(field, rng.json_value());
                    }
                }
                let bytes = serde_json::to_vec(&v)?;
                t.payload(
                    catch_unwind(|| open_payload(&bytes, Some(*kind), None)),
                    "field-replaced sample",
                );
            }
            3 => {
                let b = bad[rng.below(bad.len())];
                let edits = rng.below(3);
                let bytes = rng.edit(b.to_vec(), edits);
                let outcome = catch_unwind(|| open_payload(&bytes, None, None));
                if edits == 0 && matches!(outcome, Ok(Ok(_))) {
                    t.fail(format!(
                        "a bad sample was accepted: {}",
                        String::from_utf8_lossy(b)
                    ));
                }
                t.payload(outcome, "bad sample");
            }
            4 => {
                let mut nonce = [0u8; 24];
                for n in nonce.iter_mut() {
                    *n = rng.next() as u8;
                }
                let data = crypto::encrypt(sample, &key, nonce)?;
                let edits = rng.below(3);
                let data = rng.edit(data.into_bytes(), edits);
                let payload = serde_json::json!({
                    "_type": "encrypted",
                    "data": String::from_utf8_lossy(&data),
                })
                .to_string();
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    open_payload(payload.as_bytes(), Some(*kind), Some(&key))
                }));
                if edits == 0 && !matches!(outcome, Ok(Ok(Parsed::Message(_)))) {
                    t.fail("an encrypted valid sample was not accepted".into());
                }
                t.payload(outcome, "encrypted sample");
            }
            _ => {
                let mut h = HeaderMap::new();
                let put = |h: &mut HeaderMap, name: &'static str, v: Vec<u8>| {
                    if let Ok(v) = HeaderValue::from_bytes(&v) {
                        h.insert(name, v);
                    }
                };
                let pick = rng.below(8);
                let auth = match pick {
                    0 => rng.bytes(40),
                    1 => {
                        let (u, p) = (rng.bytes(10), rng.bytes(10));
                        basic(&u, &p)
                    }
                    _ => basic(b"alice", b"pld_0123456789abcdef"),
                };
                put(&mut h, "authorization", auth);
                let name = |rng: &mut Rng| match rng.below(4) {
                    0 => Some(rng.bytes(20)),
                    1 => Some(rng.edit(b"phone".to_vec(), 1)),
                    2 => None,
                    _ => Some(b"phone".to_vec()),
                };
                if let Some(v) = name(&mut rng) {
                    put(&mut h, "x-limit-u", v);
                }
                if let Some(v) = name(&mut rng) {
                    put(&mut h, "x-limit-d", v);
                }
                let text =
                    |rng: &mut Rng| name(rng).map(|b| String::from_utf8_lossy(&b).into_owned());
                let (u, d) = (text(&mut rng), text(&mut rng));
                let edits = rng.below(3);
                let body = if *kind == TopicKind::Device {
                    rng.edit(sample.clone(), edits)
                } else {
                    rng.bytes(64)
                };
                t.pub_request(catch_unwind(|| check_pub_request(&h, u, d, &body)));
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(std::process::id()) - cpu;
    let _ = std::panic::take_hook();
    let rejected: u64 = t.rejected.values().sum();
    println!(
        "fuzz       {} inputs in {wall:.1} s: {:.0} inputs/s; accepted {}, empty {}, rejected {rejected}, panics {}",
        t.inputs,
        t.inputs as f64 / wall.max(1e-9),
        t.accepted,
        t.empty,
        t.panics
    );
    println!(
        "fuzz       CPU {cpu:.1} s ({:.0}% of one core; one process, the checks run in it)",
        cpu / wall.max(1e-9) * 100.0
    );
    let reasons: Vec<String> = t.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!("fuzz       rejected by reason: {}", reasons.join(", "));
    if !t.failures.is_empty() {
        for f in &t.failures {
            println!("fuzz       FAILED: {f}");
        }
        bail!("{} problem(s), {} panic(s)", t.failures.len(), t.panics);
    }
    println!(
        "fuzz       no panic; every rejection has a message; valid samples accepted, bad ones rejected"
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_finds_no_panic_and_only_clear_rejections() {
        run(FuzzArgs {
            inputs: 3_000,
            seed: 7,
        })
        .unwrap();
    }
}
