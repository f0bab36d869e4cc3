//! `porchlight-bench pin`: alarm PIN verification latency through the server's own
//! `PinCheck` (throttle, keyed-tag lookup in SQLite, argon2id of the PIN profile under the
//! PINs' argon2 limit, audit), with `--codes` codes stored across a few users. The server runs
//! in this process (`porchlight_server::start`, a temporary data dir).
//!
//! Phases: `--rounds` verifications one at a time (latency without queueing: p50/p99/max),
//! then the same number with `--concurrency` at once (what a burst of keypad and Home
//! Assistant commands sees). Every PIN is right (wrong ones would lock the bench out, which
//! is the point of the throttle); a wrong PIN costs the same argon2 (a decoy). Target: a
//! verification ≤ 15 ms. CPU: this process's user+system time over each phase.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Result, bail};
use porchlight_domain::Role;
use porchlight_domain::pin::{CodeOrigin, CodeSource};
use porchlight_domain::secret::Secret;
use porchlight_store::NewAlarmCode;

use crate::ingest::{cpu_seconds, start_server};

#[derive(clap::Args, Debug, Clone)]
pub struct PinArgs {
    /// Codes stored (spread over 5 users).
    #[arg(long, default_value_t = 50)]
    codes: usize,
    /// Verifications per phase.
    #[arg(long, default_value_t = 500)]
    rounds: usize,
    /// Verifications at once in the concurrent phase.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// The PIN of code `i`: 6 digits, spread over the keyspace, leading zeros included.
fn pin_of(i: usize) -> String {
    format!("{:06}", (i * 7919 + 13) % 1_000_000)
}

pub async fn run(args: PinArgs) -> Result<()> {
    if args.codes == 0 || args.rounds == 0 {
        bail!("--codes and --rounds must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let running = start_server(dir.path()).await?;
    let pins = running.pins();
    let mut users = Vec::new();
    for u in 0..5 {
        let user = running
            .store()
            .create_user(
                &format!("pin{u}"),
                Role::User,
                &Secret::new("bench password"),
                SystemTime::now(),
            )
            .await?;
        users.push(user);
    }
    for i in 0..args.codes {
        let user = &users[i % users.len()];
        let new = NewAlarmCode {
            label: format!("code {i}"),
            pin: Secret::new(pin_of(i)),
            may_arm: true,
            may_disarm: true,
            duress: false,
            enabled: true,
            valid_from: None,
            valid_until: None,
        };
        pins.add_code("bench", user.id, new, SystemTime::now())
            .await?;
    }
    println!(
        "pin bench: {} codes stored, {} verifications per phase (pid {}, {} build)",
        args.codes,
        args.rounds,
        std::process::id(),
        if cfg!(debug_assertions) {
            "debug (argon2 at opt-level 3)"
        } else {
            "release"
        }
    );

    // One at a time.
    let cpu0 = cpu_seconds(std::process::id());
    let wall = Instant::now();
    let mut lat = Vec::with_capacity(args.rounds);
    for r in 0..args.rounds {
        let origin = CodeOrigin::new(CodeSource::Keypad);
        let t = Instant::now();
        let v = pins
            .verify(&pin_of(r % args.codes), &origin, SystemTime::now())
            .await;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        if v.is_err() {
            bail!("a right PIN was refused: {v:?}");
        }
    }
    report("sequential", &mut lat, wall, cpu0);

    // Several at once.
    let cpu0 = cpu_seconds(std::process::id());
    let wall = Instant::now();
    let per_task = args.rounds.div_ceil(args.concurrency.max(1));
    let mut tasks = Vec::new();
    for c in 0..args.concurrency.max(1) {
        let pins = Arc::clone(&pins);
        let codes = args.codes;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for r in 0..per_task {
                let origin = CodeOrigin::new(CodeSource::HomeAssistant);
                let t = Instant::now();
                let v = pins
                    .verify(&pin_of((c + r * 7) % codes), &origin, SystemTime::now())
                    .await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                if v.is_err() {
                    return Err(anyhow::anyhow!("a right PIN was refused: {v:?}"));
                }
            }
            Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    report(
        &format!("{} at once", args.concurrency.max(1)),
        &mut lat,
        wall,
        cpu0,
    );
    running.shutdown().await;
    Ok(())
}

fn report(phase: &str, lat: &mut [f64], wall: Instant, cpu0: f64) {
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat.get(i).copied().unwrap_or(0.0)
    };
    let wall = wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds(std::process::id()) - cpu0;
    println!(
        "{phase:<12} verify p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target ≤ 15 ms); {:.0} verifications/s; CPU {:.2} s over {:.2} s wall ({:.0}% of one core)",
        pick(0.5),
        pick(0.99),
        lat.last().copied().unwrap_or(0.0),
        lat.len() as f64 / wall.max(1e-9),
        cpu,
        wall,
        cpu / wall.max(1e-9) * 100.0
    );
}
