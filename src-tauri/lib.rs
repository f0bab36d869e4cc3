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
use std::path::PathBuf;

use porchlight_server::LoadOptions;

#[cfg(feature = "desktop")]
mod window;
#[cfg(feature = "desktop")]
pub use window::{build_app, run, run_app};

/// Usage text for `porchlight-desktop --help`.
pub const USAGE: &str = "\
Usage: porchlight-desktop [--data-dir PATH] [--http-port PORT] [--mqtt-port PORT] [--mqtts-port PORT]

Starts the Porchlight hub and shows its web UI in a window.

Options (each overrides the config file and PORCHLIGHT_* environment):
  --data-dir PATH    data directory (default: the per-user app data directory)
  --http-port PORT   HTTP port; 0 lets the OS choose
  --mqtt-port PORT   MQTT port; 0 lets the OS choose, -1 disables the broker
  --mqtts-port PORT  MQTT-over-TLS port (default 8883); 0 lets the OS choose, -1 turns it off
  -h, --help         show this help
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Start the hub and open the window with these overrides.
    Open(LoadOptions),
    /// Print [`USAGE`] and exit.
    Help,
}

/// Reads the command line (without the program name) into the server's [`LoadOptions`], the
/// same overrides `porchlight serve` takes. The error is a one-line message for the user.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Invocation, String> {
    let mut options = LoadOptions::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "--data-dir" => options.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--http-port" => {
                let port = value("--http-port")?;
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("--http-port: {port:?} is not a port (0-65535)"))?;
                options.http_port = Some(port);
            }
            "--mqtt-port" => {
                let port = value("--mqtt-port")?;
                let parsed = port
                    .parse::<i32>()
                    .ok()
                    .filter(|p| (-1..=65535).contains(p));
                let port = parsed.ok_or_else(|| {
                    format!("--mqtt-port: {port:?} is not a port (0-65535, or -1 for no broker)")
                })?;
                options.mqtt_port = Some(port);
            }
            "--mqtts-port" => {
                let port = value("--mqtts-port")?;
                let parsed = port
                    .parse::<i32>()
                    .ok()
                    .filter(|p| (-1..=65535).contains(p));
                let port = parsed.ok_or_else(|| {
                    format!("--mqtts-port: {port:?} is not a port (0-65535, or -1 for none)")
                })?;
                options.mqtts_port = Some(port);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Invocation::Open(options))
}

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

/// A script for the UI window on the very first start: shows the generated admin password in
/// a banner over the page (the desktop user has no terminal to read it from). It lives only in
/// this window's memory: never written to disk, gone when the app closes.
pub fn first_run_script(username: &str, password: &str) -> String {
    let username = js_string_literal(username);
    let password = js_string_literal(password);
    format!(
        r#"document.addEventListener("DOMContentLoaded", () => {{
  if (sessionStorage.getItem("porchlight-first-run-seen")) return;
  const box = document.createElement("div");
  box.setAttribute("role", "alertdialog");
  box.setAttribute("aria-label", "Your Porchlight account");
  box.style.cssText = "position:fixed;inset:auto 1rem 1rem 1rem;z-index:1000;padding:1rem;border-radius:8px;background:#fff8e6;border:1px solid #c26a00;font:15px system-ui,sans-serif;color:#222;box-shadow:0 4px 16px rgba(0,0,0,.2)";
  const title = document.createElement("strong");
  title.textContent = "Porchlight created your account. Write the password down: it is shown only now.";
  const creds = document.createElement("p");
  creds.style.cssText = "font-family:monospace;font-size:16px;margin:.5rem 0";
  creds.textContent = "user: " + {username} + "   password: " + {password};
  const done = document.createElement("button");
  done.textContent = "I have written it down";
  done.onclick = () => {{ sessionStorage.setItem("porchlight-first-run-seen", "1"); box.remove(); }};
  box.append(title, creds, done);
  document.body.append(box);
}});"#
    )
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

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        parse_args(args.iter().map(|arg| (*arg).to_owned()))
    }

    fn options(args: &[&str]) -> LoadOptions {
        match parse(args) {
            Ok(Invocation::Open(options)) => options,
            other => panic!("expected options, got {other:?}"),
        }
    }

    #[test]
    fn no_arguments_override_nothing() {
        let options = options(&[]);
        assert_eq!(options.data_dir, None);
        assert_eq!(options.http_port, None);
        assert_eq!(options.mqtt_port, None);
    }

    #[test]
    fn flags_take_separate_or_inline_values() {
        let options = options(&[
            "--data-dir",
            "/tmp/pl",
            "--http-port=0",
            "--mqtt-port",
            "-1",
            "--mqtts-port=0",
        ]);
        assert_eq!(options.data_dir, Some(PathBuf::from("/tmp/pl")));
        assert_eq!(options.http_port, Some(0));
        assert_eq!(options.mqtt_port, Some(-1));
        assert_eq!(options.mqtts_port, Some(0));
    }

    #[test]
    fn bad_arguments_are_explained() {
        assert_eq!(
            parse(&["--http-port", "http"]).unwrap_err(),
            r#"--http-port: "http" is not a port (0-65535)"#
        );
        assert!(
            parse(&["--mqtts-port", "8883x"])
                .unwrap_err()
                .starts_with("--mqtts-port")
        );
        assert!(
            parse(&["--mqtt-port", "-2"])
                .unwrap_err()
                .starts_with("--mqtt-port")
        );
        assert_eq!(
            parse(&["--data-dir"]).unwrap_err(),
            "--data-dir needs a value"
        );
        assert_eq!(
            parse(&["--verbose"]).unwrap_err(),
            r#"unknown argument "--verbose""#
        );
        assert!(matches!(
            parse(&["--http-port", "1", "-h"]),
            Ok(Invocation::Help)
        ));
    }

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
    fn first_run_script_shows_escaped_credentials() {
        let script = first_run_script("admin", "p\"</script>w");
        assert!(script.contains(r#""p\"\u003c/script>w""#), "{script}");
        assert!(script.contains(r#""admin""#));
        assert!(!script.contains("</script>"));
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
