//! Hand-made MQTT packets, for exact CONNACK codes and for clients that must not wait for
//! anything before publishing.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    buf.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = u8::try_from(len % 128).unwrap();
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    packet
}

/// An MQTT 3.1.1 CONNECT with a clean session, a user name and a password.
pub fn connect(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    connect_with(client_id, user, Some(password))
}

/// An MQTT 3.1.1 CONNECT with a clean session, a user name and, if given, a password.
pub fn connect_with(client_id: &str, user: &str, password: Option<&str>) -> Vec<u8> {
    let mut connect = Vec::new();
    put_str(&mut connect, b"MQTT");
    let flags = 0x80 | if password.is_some() { 0x40 } else { 0 } | 0x02;
    connect.extend_from_slice(&[4, flags, 0, 30]);
    put_str(&mut connect, client_id.as_bytes());
    put_str(&mut connect, user.as_bytes());
    if let Some(password) = password {
        put_str(&mut connect, password.as_bytes());
    }
    packet(0x10, &connect)
}

/// [`connect`], then a QoS 0 PUBLISH of `first` to `topic`.
pub fn connect_and_publish(client_id: &str, user: &str, password: &str, topic: &str) -> Vec<u8> {
    let mut publish = Vec::new();
    put_str(&mut publish, topic.as_bytes());
    publish.extend_from_slice(b"first");
    [connect(client_id, user, password), packet(0x30, &publish)].concat()
}

/// Sends `bytes` on a new connection to `addr`; returns the CONNACK return code and the
/// still open socket.
pub async fn send(addr: SocketAddr, bytes: &[u8]) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_exact(&mut connack),
    )
    .await
    .expect("CONNACK timeout")
    .unwrap();
    assert_eq!(connack[0], 0x20, "not a CONNACK");
    (connack[3], s)
}
