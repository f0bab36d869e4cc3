//! The tab's one live feed (`/ws/live`): a single WebSocket opened by the shell after sign-in
//! ([`open`]), whose messages are dispatched to whoever listens ([`listen`]): the alarm's
//! status ([`follow_alarm`]), the map's OwnTracks events and snapshots. Screens subscribe and
//! unsubscribe (on their cleanup); they never open a socket of their own.
//!
//! The socket reconnects by itself: at once after a `resync` (the new connection starts with a
//! fresh snapshot, which every listener gets), else after [`BACKOFF_SECS`] (reset by a
//! successful open). After every close it first asks `GET /api/me` whether the session still
//! holds: the server closes the feed when the sign-in ends (code 1008) and refuses the
//! upgrade afterwards, so an ended session sends the tab to the login page instead of
//! reconnecting forever. [`feed`] tells whether it is up, for the shell's "Reconnecting…" line
//! and the screens' status.
//!
//! The socket and the listeners live in a thread-local (wasm has one thread), so reactive
//! cleanups (which must be `Send`) only carry numbers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use porchlight_api::alarm::AlarmStatus;
use porchlight_api::owntracks::LiveMessage;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{MessageEvent, WebSocket};

/// Whether the feed is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The first connection is being opened.
    Connecting,
    Live,
    /// It dropped (or could not connect); the next attempt is scheduled.
    Reconnecting,
}

/// One message of the feed, as listeners get it.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// `{"type": "alarm", …}`: the alarm's status, after each (re)connect and on each change.
    Alarm(AlarmStatus),
    /// The map's messages: `snapshot` (after each (re)connect), `location`, `card`, `status`,
    /// `transition`. (`resync` is handled here, by reconnecting.)
    Map(LiveMessage),
}

/// Seconds to wait before each reconnect attempt in a row (the last one repeats).
pub const BACKOFF_SECS: [u32; 6] = [1, 2, 4, 8, 15, 30];

type Listener = Rc<dyn Fn(&LiveEvent)>;

struct Hub {
    /// Tells this hub's timers and handlers from those of an earlier one (sign out, sign in).
    generation: u32,
    feed: RwSignal<Feed>,
    socket: Option<WebSocket>,
    /// Keeps the socket's handlers alive as long as the socket.
    handlers: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    /// Failed attempts since the last successful open.
    failures: usize,
    listeners: BTreeMap<u32, Listener>,
}

thread_local! {
    static HUB: RefCell<Option<Hub>> = const { RefCell::new(None) };
    static COUNTER: RefCell<u32> = const { RefCell::new(0) };
}

fn next_number() -> u32 {
    COUNTER.with(|n| {
        let mut n = n.borrow_mut();
        *n = n.wrapping_add(1);
        *n
    })
}

/// Opens the tab's feed, for the current reactive owner (the shell); closed when it is
/// cleaned up (sign out). Returns the connection state.
pub fn open() -> RwSignal<Feed> {
    let feed = RwSignal::new(Feed::Connecting);
    let generation = next_number();
    let earlier = HUB.with(|h| {
        h.borrow_mut().replace(Hub {
            generation,
            feed,
            socket: None,
            handlers: Vec::new(),
            failures: 0,
            listeners: BTreeMap::new(),
        })
    });
    if let Some(mut earlier) = earlier {
        close_socket(&mut earlier);
    }
    connect(generation);
    on_cleanup(move || {
        let hub = HUB.with(|h| {
            let mut h = h.borrow_mut();
            if h.as_ref().is_some_and(|hub| hub.generation == generation) {
                h.take()
            } else {
                None
            }
        });
        if let Some(mut hub) = hub {
            close_socket(&mut hub);
        }
    });
    feed
}

/// The feed's connection state (`Connecting` when no feed is open).
pub fn feed() -> Signal<Feed> {
    match HUB.with(|h| h.borrow().as_ref().map(|hub| hub.feed)) {
        Some(feed) => feed.into(),
        None => Signal::stored(Feed::Connecting),
    }
}

/// Calls `on_event` with every message of the feed until the current reactive owner (a
/// screen) is cleaned up.
pub fn listen(on_event: impl Fn(&LiveEvent) + 'static) {
    let id = next_number();
    let listener: Listener = Rc::new(on_event);
    HUB.with(|h| {
        if let Some(hub) = h.borrow_mut().as_mut() {
            hub.listeners.insert(id, listener);
        }
    });
    on_cleanup(move || {
        HUB.with(|h| {
            if let Some(hub) = h.borrow_mut().as_mut() {
                hub.listeners.remove(&id);
            }
        });
    });
}

/// Calls `on_alarm` with each alarm status the feed delivers, until the current reactive
/// owner is cleaned up.
pub fn follow_alarm(on_alarm: Callback<AlarmStatus>) {
    listen(move |event| {
        if let LiveEvent::Alarm(status) = event {
            on_alarm.run(status.clone());
        }
    });
}

fn close_socket(hub: &mut Hub) {
    if let Some(socket) = hub.socket.take() {
        // Detach the handlers first: they are dropped below, and the close event comes later.
        socket.set_onopen(None);
        socket.set_onmessage(None);
        socket.set_onclose(None);
        let _ = socket.close();
    }
    hub.handlers.clear();
}

/// Runs `f` on the hub of `generation`, if that one is still open.
fn with_hub<T>(generation: u32, f: impl FnOnce(&mut Hub) -> T) -> Option<T> {
    HUB.with(|h| {
        h.borrow_mut()
            .as_mut()
            .filter(|hub| hub.generation == generation)
            .map(f)
    })
}

fn url() -> Option<String> {
    let location = window().location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/ws/live", location.host().ok()?))
}

#[derive(Deserialize)]
struct Tagged {
    #[serde(rename = "type")]
    kind: String,
}

/// The event a text frame carries, or `None` for a `resync` or something unreadable.
fn parse(text: &str) -> Option<LiveEvent> {
    let tag = serde_json::from_str::<Tagged>(text).ok()?;
    match tag.kind.as_str() {
        "alarm" => serde_json::from_str(text).ok().map(LiveEvent::Alarm),
        "resync" => None,
        _ => serde_json::from_str(text).ok().map(LiveEvent::Map),
    }
}

fn connect(generation: u32) {
    let Some(socket) = url().and_then(|u| WebSocket::new(&u).ok()) else {
        retry_later(generation);
        return;
    };
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if let Some(feed) = with_hub(generation, |hub| {
            hub.failures = 0;
            hub.feed
        }) {
            feed.try_set(Feed::Live);
        }
    });
    let on_message = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        let Some(text) = event
            .dyn_ref::<MessageEvent>()
            .and_then(|m| m.data().as_string())
        else {
            return;
        };
        if serde_json::from_str::<Tagged>(&text).is_ok_and(|t| t.kind == "resync") {
            // Messages were lost: a new connection starts with a fresh snapshot. Not from
            // inside this handler, which closing the socket drops.
            set_timeout(
                move || {
                    if with_hub(generation, close_socket).is_some() {
                        connect(generation);
                    }
                },
                Duration::ZERO,
            );
            return;
        }
        let Some(event) = parse(&text) else { return };
        // Call the listeners outside the borrow: they may add or remove listeners.
        let listeners: Vec<Listener> =
            with_hub(generation, |hub| hub.listeners.values().cloned().collect())
                .unwrap_or_default();
        for listener in listeners {
            listener(&event);
        }
    });
    let on_close = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        // Not from inside this handler, which dropping the socket's handlers frees.
        set_timeout(move || after_close(generation), Duration::ZERO);
    });
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let kept = socket.clone();
    let stale = with_hub(generation, move |hub| {
        hub.socket = Some(kept);
        hub.handlers = vec![on_open, on_message, on_close];
    })
    .is_none();
    if stale {
        // Signed out meanwhile: the handlers were dropped with the closure above.
        socket.set_onopen(None);
        socket.set_onmessage(None);
        socket.set_onclose(None);
        let _ = socket.close();
    }
}

/// After the socket closed (the server signed the viewer out, dropped it, or refused the
/// upgrade): asks the API whether the session still holds. The browser hides why an upgrade
/// failed (a 401 looks like any lost connection), so without this check a tab whose session
/// ended elsewhere would retry forever, showing "reconnecting" over a page whose every
/// request fails. An ended session goes to the login page (`api`'s signed-out handler, which
/// closes this feed with the shell); anything else reconnects after the backoff.
fn after_close(generation: u32) {
    let Some(feed) = with_hub(generation, |hub| {
        close_socket(hub);
        hub.feed
    }) else {
        return;
    };
    feed.try_set(Feed::Reconnecting);
    leptos::task::spawn_local(async move {
        match crate::api::current_session().await {
            Ok(None) => crate::api::session_ended(),
            _ => retry_later(generation),
        }
    });
}

/// After a drop or a failed attempt: says so, then tries again after the next backoff step.
fn retry_later(generation: u32) {
    let Some((feed, delay)) = with_hub(generation, |hub| {
        close_socket(hub);
        let delay = BACKOFF_SECS[hub.failures.min(BACKOFF_SECS.len() - 1)];
        hub.failures += 1;
        (hub.feed, delay)
    }) else {
        return;
    };
    feed.try_set(Feed::Reconnecting);
    set_timeout(
        move || {
            if with_hub(generation, |hub| hub.socket.is_none()) == Some(true) {
                connect(generation);
            }
        },
        Duration::from_secs(u64::from(delay)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_told_apart_by_type() {
        assert!(matches!(
            parse(r#"{"type":"snapshot","devices":[]}"#),
            Some(LiveEvent::Map(LiveMessage::Snapshot { .. }))
        ));
        assert_eq!(parse(r#"{"type":"resync","missed":3}"#), None);
        assert_eq!(parse("not json"), None);
    }
}
