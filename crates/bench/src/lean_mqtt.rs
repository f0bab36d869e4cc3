//! A lean MQTT 3.1.1 QoS 1 publisher over raw TCP, so that the load generator is not what is
//! measured: CONNECT, then PUBLISHes written in batches while fewer than `window` packet ids
//! are unacknowledged, PUBACKs read on the other half of the socket. No retries, no session
//! state: a broken connection ends that publisher and is counted as an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

pub(crate) fn put_str(buf: &mut Vec<u8>, s: &[u8]) -> Result<()> {
    buf.extend_from_slice(&u16::try_from(s.len())?.to_be_bytes());
    buf.extend_from_slice(s);
    Ok(())
}

/// Appends one packet: fixed header byte, remaining length, body.
pub(crate) fn put_packet(out: &mut Vec<u8>, first: u8, body: &[u8]) {
    out.push(first);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
}

/// What one publisher did.
#[derive(Debug, Default)]
pub struct PublisherOutcome {
    pub sent: u64,
    pub acked: u64,
    /// Publish→PUBACK latencies in microseconds.
    pub latencies_us: Vec<u32>,
    pub error: Option<String>,
}

/// Connects as `user`/`password`, then publishes `payload(i)` to `topic` at QoS 1 with up to
/// `window` in flight until `deadline`, then waits (≤ 15 s) for the outstanding PUBACKs and
/// disconnects.
pub async fn publish(
    addr: std::net::SocketAddr,
    client_id: &str,
    (user, password): (&str, &str),
    topic: &str,
    window: u16,
    deadline: tokio::time::Instant,
    mut payload: impl FnMut(u64) -> Vec<u8>,
) -> Result<PublisherOutcome> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(16 * 1024, read);

    let mut body = Vec::new();
    put_str(&mut body, b"MQTT")?;
    body.extend_from_slice(&[4, 0x80 | 0x40 | 0x02, 0, 60]);
    put_str(&mut body, client_id.as_bytes())?;
    put_str(&mut body, user.as_bytes())?;
    put_str(&mut body, password.as_bytes())?;
    let mut out = Vec::new();
    put_packet(&mut out, 0x10, &body);
    write.write_all(&out).await?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(30), read.read_exact(&mut connack))
        .await
        .context("no CONNACK within 30 s")??;
    if connack[0] != 0x20 || connack[3] != 0 {
        bail!("{client_id}: CONNACK refused ({connack:?})");
    }

    let window = usize::from(window.max(1));
    let permits = Arc::new(Semaphore::new(window));
    // Send time of each packet id, in ns since `origin` (0 = not in flight).
    let origin = Instant::now();
    // Packet ids cycle through 1..=ids (four windows' worth), so an id is reused only long
    // after its PUBACK; the table stays small with hundreds of connections.
    let ids = u16::try_from((window * 4).max(64)).unwrap_or(u16::MAX);
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..=ids).map(|_| AtomicU64::new(0)).collect());
    let acked = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let reader = {
        let (permits, sent_at) = (permits.clone(), sent_at.clone());
        let (acked, latencies) = (acked.clone(), latencies.clone());
        tokio::spawn(async move {
            let result: Result<()> = async {
                loop {
                    let first = read.read_u8().await?;
                    let mut len = 0usize;
                    let mut shift = 0;
                    loop {
                        let b = read.read_u8().await?;
                        len |= usize::from(b & 0x7f) << shift;
                        shift += 7;
                        if b & 0x80 == 0 || shift > 21 {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    read.read_exact(&mut body).await?;
                    if first >> 4 == 4
                        && let [hi, lo, ..] = body[..]
                    {
                        let pkid = usize::from(u16::from_be_bytes([hi, lo]));
                        let at = sent_at
                            .get(pkid)
                            .map_or(0, |t| t.swap(0, Ordering::Relaxed));
                        if at != 0 {
                            let now = origin.elapsed().as_nanos() as u64;
                            let us =
                                u32::try_from(now.saturating_sub(at) / 1000).unwrap_or(u32::MAX);
                            if let Ok(mut l) = latencies.lock() {
                                l.push(us);
                            }
                            acked.fetch_add(1, Ordering::Relaxed);
                            permits.add_permits(1);
                        }
                    }
                }
            }
            .await;
            result
        })
    };

    let mut outcome = PublisherOutcome::default();
    let mut pkid: u16 = 0;
    let mut i = 0u64;
    let mut error = None;
    while tokio::time::Instant::now() < deadline {
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let Ok(first) = first else { break };
        first.forget();
        let mut n = 1;
        while n < window {
            match permits.try_acquire() {
                Ok(p) => {
                    p.forget();
                    n += 1;
                }
                Err(_) => break,
            }
        }
        out.clear();
        let now = (origin.elapsed().as_nanos() as u64).max(1);
        for _ in 0..n {
            pkid = if pkid >= ids { 1 } else { pkid + 1 };
            body.clear();
            put_str(&mut body, topic.as_bytes())?;
            body.extend_from_slice(&pkid.to_be_bytes());
            body.extend_from_slice(&payload(i));
            i += 1;
            put_packet(&mut out, 0x32, &body);
            if let Some(t) = sent_at.get(usize::from(pkid)) {
                t.store(now, Ordering::Relaxed);
            }
        }
        if let Err(e) = write.write_all(&out).await {
            error = Some(format!("{client_id}: write: {e}"));
            break;
        }
        outcome.sent += n as u64;
    }
    // The outstanding acknowledgements, then a clean DISCONNECT.
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        permits.acquire_many(u32::try_from(window).unwrap_or(u32::MAX)),
    )
    .await;
    let _ = write.write_all(&[0xe0, 0]).await;
    let _ = write.shutdown().await;
    let read_error = if reader.is_finished() {
        match reader.await {
            Ok(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    } else {
        reader.abort();
        None
    };
    outcome.acked = acked.load(Ordering::Relaxed);
    outcome.latencies_us = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    outcome.error = error.or_else(|| {
        (outcome.sent > outcome.acked).then(|| {
            format!(
                "{client_id}: {} unacknowledged ({read_error:?})",
                outcome.sent - outcome.acked
            )
        })
    });
    Ok(outcome)
}
