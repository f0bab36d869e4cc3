//! Porchlight's desktop shell: the same server as `porchlight serve`, started in-process, and a
//! native window showing its web UI.
//!
//! Architecture invariant: the shell knows nothing of HTTP routes, sessions, the store or MQTT.
//! It only calls `porchlight_server::{Config::load, start}` and points a window at the server's
//! `/`. The UI in the window is exactly the one a browser gets, so the UI must not depend on
//! running inside Tauri (and the window grants it no Tauri commands).
//!
//! Only the window code needs Tauri; it is compiled with the `desktop` feature. What is left here
//! is plain and unit-tested without WebKitGTK.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[cfg(feature = "desktop")]
mod window;
#[cfg(feature = "desktop")]
pub use window::{build_app, run, run_app};

/// The address of the UI for a server whose HTTP listener is bound to `http_addr`.
///
/// A wildcard bind (`0.0.0.0`, `::`) is reached through loopback of the same family; a bind to
/// one interface is reached at that interface's address.
pub fn ui_url(http_addr: SocketAddr) -> String {
    let ip = match http_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(ip, http_addr.port()))
}

/// A script that hands a startup failure to the splash page before its own scripts run.
///
/// The message goes through JSON so quotes, backslashes and newlines in it cannot break out
/// of the string literal.
pub fn startup_error_script(message: &str) -> String {
    let literal = js_string_literal(message);
    format!("window.__PORCHLIGHT_STARTUP_ERROR = {literal};")
}

/// `message` as a JSON (and so JavaScript) string literal, escaping `<` too so the text can
/// never close a `<script>` element.
fn js_string_literal(message: &str) -> String {
    let mut literal = String::with_capacity(message.len() + 2);
    literal.push('"');
    for ch in message.chars() {
        match ch {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            '\n' => literal.push_str("\\n"),
            '\r' => literal.push_str("\\r"),
            '\t' => literal.push_str("\\t"),
            '<' => literal.push_str("\\u003c"),
            '\u{2028}' => literal.push_str("\\u2028"),
            '\u{2029}' => literal.push_str("\\u2029"),
            ch if u32::from(ch) < 0x20 => literal.push_str(&format!("\\u{:04x}", u32::from(ch))),
            ch => literal.push(ch),
        }
    }
    literal.push('"');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reached_through_loopback() {
        assert_eq!(
            ui_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(ui_url("[::]:8080".parse().unwrap()), "http://[::1]:8080/");
    }

    #[test]
    fn specific_binds_are_reached_at_their_address() {
        assert_eq!(
            ui_url("127.0.0.1:41234".parse().unwrap()),
            "http://127.0.0.1:41234/"
        );
        assert_eq!(
            ui_url("192.168.1.5:80".parse().unwrap()),
            "http://192.168.1.5:80/"
        );
    }

    #[test]
    fn startup_error_script_escapes_the_message() {
        let script = startup_error_script("bad \"port\"\n</script><b>\\");
        assert_eq!(
            script,
            r#"window.__PORCHLIGHT_STARTUP_ERROR = "bad \"port\"\n\u003c/script>\u003cb>\\";"#
        );
    }
}
