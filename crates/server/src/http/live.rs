//! `GET /ws/live`: the OwnTracks live feed as a WebSocket.
//!
//! Auth at the upgrade, as any API call: the session cookie or `Authorization: Bearer`; 401
//! otherwise (before any upgrade). The server then sends JSON text messages (shapes in
//! [`super::views::LiveMessage`], told apart by `type`):
//! - `snapshot` first: every device the viewer may see, with its online state and last
//!   location (the viewer subscribes to the feed before the snapshot is read, so nothing
//!   committed in between is missed; it may arrive twice, in the snapshot and after it);
//! - `location`, `transition`, `card`, `status` (online/offline) for each change the ingest
//!   service committed ([`crate::owntracks::live`]) about a device the viewer may see
//!   ([`super::visibility::may_see`], the one visibility rule, with the friendships of that
//!   moment);
//! - `snapshot` again whenever the users the viewer may see change (a grant to them or a
//!   revoke of one): the viewer's visible devices re-read, to replace what the client shows (a revoked friend's
//!   devices disappear, a new friend's appear); events are filtered by the new set from then
//!   on, without reconnecting;
//! - `alarm` right after the first snapshot and after each change of the alarm's state (any
//!   step that changed its status: a transition, a sensor opening or closing, a bypass), with
//!   the fields of `GET /api/alarm` ([`super::alarm::status_view`]) beside `type`; every
//!   signed-in viewer gets it (the alarm is the household's, as `GET /api/alarm`);
//! - `resync` with `missed`: this viewer fell behind by more than the feed holds and lost that
//!   many messages (its own loss only: the feed never waits for a viewer, so a slow browser
//!   never slows ingest); the client should reload (reconnect for a new snapshot).
//!
//! Sign-out: every [`CREDENTIAL_CHECK`] the cookie or token the socket was opened with is
//! checked again; once it no longer signs the viewer in (signed out, sessions ended by a
//! password change, token revoked, user removed, session expired) the socket is closed with
//! code 1008 (policy) and reason `signed out`: a live map does not outlive its sign-in.
//!
//! Keepalive: a ping every [`PING_EVERY`]; a viewer that has not answered the previous ping
//! by the next one is closed. Messages from the client other than pongs and close are
//! ignored. On server shutdown every socket is closed with code 1001 (going away), also while
//! a send to a stalled client is pending, so the HTTP server's graceful shutdown never waits
//! on an open socket.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderMap;
use axum::response::Response;
use porchlight_domain::acl::Friendships;
use porchlight_store::{Store, User};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::AppState;
use super::auth::{Credential, CurrentUser};
use super::error::{ApiError, ApiResult};
use super::views::{LiveDeviceView, LiveMessage, live_device, live_message};
use super::visibility::{may_see, visible_users};
use crate::owntracks::LiveEvent;

/// How often the server pings a viewer.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// How often a viewer's sign-in is checked again.
pub const CREDENTIAL_CHECK: Duration = Duration::from_secs(5);

/// How long a closing handshake may take before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `GET /ws/live`.
pub async fn live(
    State(state): State<AppState>,
    CurrentUser(viewer): CurrentUser,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let credential = Credential::of(&headers).ok_or(ApiError::Unauthorized)?;
    let events = state.live.subscribe();
    let mut friends = state.friends.subscribe();
    let now_friends = Arc::clone(&friends.borrow_and_update());
    let devices = visible_devices(&state.store, &viewer, &now_friends).await?;
    // Marked seen before the status is read, so a change in between is sent after it.
    let mut alarm = state.alarm_live.clone();
    alarm.borrow_and_update();
    let alarm_now = state.alarm.status().await?;
    let alarm_now = super::alarm::live_message(super::alarm::view_of(&state, &alarm_now).await?);
    let closing = state.closing.clone();
    let store = state.store.clone();
    Ok(upgrade.on_upgrade(move |socket| async move {
        let mut conn = Viewer {
            socket,
            closing,
            visible: visible_set(&viewer, &now_friends),
            user: viewer,
            friends,
            store,
            credential,
            state,
            alarm: Some(alarm),
        };
        conn.run(LiveMessage::Snapshot { devices }, alarm_now, events)
            .await;
    }))
}

/// The snapshot of every device `viewer` may see with these friendships.
async fn visible_devices(
    store: &Store,
    viewer: &User,
    friends: &Friendships,
) -> ApiResult<Vec<LiveDeviceView>> {
    Ok(store
        .last_locations(visible_users(viewer, friends))
        .await?
        .iter()
        .map(live_device)
        .collect())
}

struct Viewer {
    socket: WebSocket,
    /// Becomes true when the server shuts down.
    closing: watch::Receiver<bool>,
    user: User,
    /// The server's friendships: read for each event, and a change sends a new snapshot.
    friends: watch::Receiver<Arc<Friendships>>,
    /// Whose devices the last snapshot showed (sorted; `None`: everyone's), so a change of
    /// other people's friendships sends no new snapshot.
    visible: Option<Vec<i64>>,
    store: Store,
    /// What the socket was opened with, checked again every [`CREDENTIAL_CHECK`].
    credential: Credential,
    state: AppState,
    /// The alarm's `alarm` message after each change ([`super::live_feed`]); `None` once the
    /// alarm has stopped.
    alarm: Option<watch::Receiver<Option<Arc<str>>>>,
}

/// Waits for the next alarm change; never resolves without a receiver.
async fn alarm_changed(alarm: &mut Option<watch::Receiver<Option<Arc<str>>>>) -> bool {
    match alarm {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// [`visible_users`], sorted, to compare.
fn visible_set(viewer: &User, friends: &Friendships) -> Option<Vec<i64>> {
    visible_users(viewer, friends).map(|mut users| {
        users.sort_unstable();
        users
    })
}

/// What woke a viewer's loop.
enum Next {
    Event(Result<Arc<LiveEvent>, RecvError>),
    FriendsChanged,
    /// `false`: the alarm has stopped.
    AlarmChanged(bool),
    Pong,
    Ping,
    CheckCredential,
}

/// Why a viewer's loop ends.
enum End {
    /// The server shuts down (or the feed ended): close with "going away".
    GoingAway,
    /// The client left, or the socket failed.
    Gone,
    /// The sign-in the socket was opened with no longer holds.
    SignedOut,
}

impl Viewer {
    async fn run(
        &mut self,
        snapshot: LiveMessage,
        alarm: String,
        mut events: broadcast::Receiver<Arc<LiveEvent>>,
    ) {
        let end = match self.serve(snapshot, alarm, &mut events).await {
            Ok(()) => return,
            Err(end) => end,
        };
        drop(events);
        let frame = match end {
            End::GoingAway => Some(CloseFrame {
                code: close_code::AWAY,
                reason: "server shutting down".into(),
            }),
            End::SignedOut => Some(CloseFrame {
                code: close_code::POLICY,
                reason: "signed out".into(),
            }),
            End::Gone => None,
        };
        if let Some(frame) = frame {
            let _ = tokio::time::timeout(CLOSE_WAIT, self.socket.send(Message::Close(Some(frame))))
                .await;
        }
        tracing::debug!(user = %self.user.username, "live viewer closed");
    }

    /// Sends until the viewer or the server ends; always `Err` (why it ended).
    async fn serve(
        &mut self,
        snapshot: LiveMessage,
        alarm: String,
        events: &mut broadcast::Receiver<Arc<LiveEvent>>,
    ) -> Result<(), End> {
        self.send(&snapshot).await?;
        self.send_raw(Message::Text(alarm.into())).await?;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let mut awaiting_pong = false;
        let mut check = tokio::time::interval_at(
            tokio::time::Instant::now() + CREDENTIAL_CHECK,
            CREDENTIAL_CHECK,
        );
        loop {
            let next = tokio::select! {
                _ = self.closing.wait_for(|closing| *closing) => return Err(End::GoingAway),
                event = events.recv() => Next::Event(event),
                changed = self.friends.changed() => match changed {
                    Ok(()) => Next::FriendsChanged,
                    Err(_) => return Err(End::GoingAway),
                },
                changed = alarm_changed(&mut self.alarm) => Next::AlarmChanged(changed),
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Pong(_))) => Next::Pong,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Err(End::Gone),
                    Some(Ok(_)) => continue,
                },
                _ = ping.tick() => Next::Ping,
                _ = check.tick() => Next::CheckCredential,
            };
            match next {
                Next::Event(Ok(event)) => {
                    let visible = may_see(&self.user, event.user_id, &self.friends.borrow());
                    if visible {
                        self.send(&live_message(event.as_ref())).await?;
                    }
                }
                Next::FriendsChanged => {
                    let friends = Arc::clone(&self.friends.borrow_and_update());
                    let visible = visible_set(&self.user, &friends);
                    if visible == self.visible {
                        continue;
                    }
                    self.visible = visible;
                    match visible_devices(&self.store, &self.user, &friends).await {
                        Ok(devices) => self.send(&LiveMessage::Snapshot { devices }).await?,
                        Err(e) => {
                            tracing::warn!(user = %self.user.username, error = %e, "live snapshot not re-read; closing");
                            return Err(End::GoingAway);
                        }
                    }
                }
                Next::AlarmChanged(false) => self.alarm = None,
                Next::AlarmChanged(true) => {
                    let message = self
                        .alarm
                        .as_mut()
                        .and_then(|rx| rx.borrow_and_update().clone());
                    if let Some(message) = message {
                        self.send_raw(Message::Text(message.as_ref().into()))
                            .await?;
                    }
                }
                Next::Event(Err(RecvError::Lagged(missed))) => {
                    self.send(&LiveMessage::Resync { missed }).await?;
                }
                Next::Event(Err(RecvError::Closed)) => return Err(End::GoingAway),
                Next::Pong => awaiting_pong = false,
                Next::CheckCredential => {
                    match self.credential.user(&self.state, SystemTime::now()).await {
                        Ok(Some(user)) if user.id == self.user.id => {}
                        Ok(_) => {
                            tracing::debug!(user = %self.user.username, "live viewer signed out; closing");
                            return Err(End::SignedOut);
                        }
                        // The store is busy or failing: check again next time.
                        Err(e) => {
                            tracing::warn!(user = %self.user.username, error = %e, "live viewer's sign-in not checked");
                        }
                    }
                }
                Next::Ping => {
                    if awaiting_pong {
                        tracing::debug!(user = %self.user.username, "live viewer did not answer a ping");
                        return Err(End::Gone);
                    }
                    awaiting_pong = true;
                    self.send_raw(Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    async fn send(&mut self, message: &LiveMessage) -> Result<(), End> {
        let text = serde_json::to_string(message).map_err(|e| {
            tracing::error!(error = %e, "live message not serialisable");
            End::Gone
        })?;
        self.send_raw(Message::Text(text.into())).await
    }

    /// Sends one frame; a stalled client holds this up, but never past the server's shutdown.
    async fn send_raw(&mut self, message: Message) -> Result<(), End> {
        tokio::select! {
            sent = self.socket.send(message) => sent.map_err(|_| End::Gone),
            _ = self.closing.wait_for(|closing| *closing) => Err(End::GoingAway),
        }
    }
}

#[cfg(test)]
mod tests {
    use porchlight_store::LocationFields;
    use serde_json::json;

    use super::*;
    use crate::owntracks::LiveKind;

    #[test]
    fn messages_are_flat_json_objects_told_apart_by_type() {
        let event = LiveEvent {
            user_id: 2,
            username: "alice".into(),
            device_id: 7,
            device: "phone".into(),
            kind: LiveKind::Location {
                tst: 1_764_000_000,
                fields: LocationFields {
                    lat: 52.5,
                    lon: 13.4,
                    batt: Some(80),
                    ..Default::default()
                },
            },
        };
        let value = serde_json::to_value(live_message(&event)).unwrap();
        assert_eq!(
            value,
            json!({ "type": "location", "user": "alice", "user_id": 2, "device": "phone",
                    "device_id": 7, "tst": 1_764_000_000, "lat": 52.5, "lon": 13.4, "batt": 80 })
        );
        let status = LiveEvent {
            kind: LiveKind::Status { online: false },
            ..event
        };
        assert_eq!(
            serde_json::to_value(live_message(&status)).unwrap()["online"],
            false
        );
        assert_eq!(
            serde_json::to_value(LiveMessage::Resync { missed: 5 }).unwrap(),
            json!({ "type": "resync", "missed": 5 })
        );
    }
}
