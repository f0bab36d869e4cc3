//! The live feed (`/ws/live`) for screens that follow the alarm: a WebSocket that delivers
//! each `{"type": "alarm", ...}` message as an [`AlarmStatus`] and reconnects by itself
//! (1 s, doubling to 30 s) until the screen that opened it is gone.
//!
//! The socket lives in a thread-local table keyed by a number, so the reactive cleanup (which
//! must be `Send`) only carries that number. Other message types (the map's) are ignored here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use leptos::prelude::*;
use porchlight_api::alarm::AlarmStatus;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{MessageEvent, WebSocket};

/// Whether the feed is connected, for a small indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Connecting,
    Live,
    Reconnecting,
}

struct Slot {
    socket: Option<WebSocket>,
    /// Keeps the handlers alive as long as the socket.
    _handlers: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

thread_local! {
    static SOCKETS: RefCell<HashMap<u32, Option<Slot>>> = RefCell::new(HashMap::new());
    static NEXT_ID: RefCell<u32> = const { RefCell::new(0) };
}

#[derive(Deserialize)]
struct Tagged {
    #[serde(rename = "type")]
    kind: String,
}

/// Opens the feed for the current reactive owner (a screen): `on_alarm` gets each alarm
/// status, `feed` tracks the connection. Closed when the owner is cleaned up.
pub fn follow_alarm(on_alarm: Callback<AlarmStatus>, feed: RwSignal<Feed>) {
    let id = NEXT_ID.with(|n| {
        let mut n = n.borrow_mut();
        *n = n.wrapping_add(1);
        *n
    });
    SOCKETS.with(|s| s.borrow_mut().insert(id, None));
    connect(id, on_alarm, feed, Duration::from_secs(1));
    on_cleanup(move || {
        if let Some(Some(slot)) = SOCKETS.with(|s| s.borrow_mut().remove(&id))
            && let Some(socket) = slot.socket
        {
            // Detach the handlers first: they are dropped with the slot, and the socket's
            // close event comes later.
            socket.set_onopen(None);
            socket.set_onmessage(None);
            socket.set_onclose(None);
            let _ = socket.close();
        }
    });
}

fn still_open(id: u32) -> bool {
    SOCKETS.with(|s| s.borrow().contains_key(&id))
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

fn connect(id: u32, on_alarm: Callback<AlarmStatus>, feed: RwSignal<Feed>, backoff: Duration) {
    if !still_open(id) {
        return;
    }
    let Some(socket) = url().and_then(|u| WebSocket::new(&u).ok()) else {
        retry(id, on_alarm, feed, backoff);
        return;
    };
    let opened = std::rc::Rc::new(std::cell::Cell::new(false));
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new({
        let opened = opened.clone();
        move |_| {
            opened.set(true);
            let _ = feed.try_set(Feed::Live);
        }
    });
    let on_message = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        let Some(text) = event
            .dyn_ref::<MessageEvent>()
            .and_then(|m| m.data().as_string())
        else {
            return;
        };
        if serde_json::from_str::<Tagged>(&text).is_ok_and(|t| t.kind == "alarm")
            && let Ok(status) = serde_json::from_str::<AlarmStatus>(&text)
        {
            on_alarm.run(status);
        }
    });
    let on_close = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if still_open(id) {
            let _ = feed.try_set(Feed::Reconnecting);
            // After a connection that worked, start again from a short wait; a connection
            // that never opened waits longer each time.
            let wait = if opened.get() {
                Duration::from_millis(500)
            } else {
                backoff
            };
            retry(id, on_alarm, feed, wait);
        }
    });
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    SOCKETS.with(|s| {
        if let Some(slot) = s.borrow_mut().get_mut(&id) {
            *slot = Some(Slot {
                socket: Some(socket),
                _handlers: vec![on_open, on_message, on_close],
            });
        }
    });
}

fn retry(id: u32, on_alarm: Callback<AlarmStatus>, feed: RwSignal<Feed>, backoff: Duration) {
    let next = (backoff * 2).min(Duration::from_secs(30));
    set_timeout(move || connect(id, on_alarm, feed, next), backoff);
}
