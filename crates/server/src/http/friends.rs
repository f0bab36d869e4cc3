//! Friendships over HTTP: a user grants another the sight of their OwnTracks devices (in this
//! API, the live feed and the broker), and revokes it.
//!
//! - `GET /api/friends`: the grants the caller gave or received (admins: every grant), as
//!   `[{"owner", "viewer", "created_at"}]` (the owner's devices are shown to the viewer).
//! - `PUT /api/friends/{viewer}`: the caller grants `viewer` (201 new, 200 already granted).
//! - `DELETE /api/friends/{viewer}`: the caller revokes it (204; 404 when there was none).
//! - `PUT|DELETE /api/users/{owner}/friends/{viewer}`: the same for `owner`: the owner
//!   themselves or an admin (403 otherwise).
//!
//! Errors: 401 not signed in, 404 unknown user, 400 granting oneself. Each change is audited
//! (`friend_granted` / `friend_revoked`, detail `owner -> viewer`) and applied to the server's
//! friendships ([`crate::friends::Friends::reload`]) before the answer, so a revoked viewer's
//! WebSocket and MQTT subscriptions stop showing the owner's devices at once.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use porchlight_api::owntracks::FriendshipView;
use porchlight_domain::Role;
use porchlight_store::{AuditEntry, AuditKind, Friendship, User};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ApiResult};
use super::views::unix_ms;

/// One grant as the API shows it.
fn friendship_view(f: &Friendship) -> FriendshipView {
    FriendshipView {
        owner: f.owner.clone(),
        viewer: f.viewer.clone(),
        created_at: unix_ms(f.created_at),
    }
}

/// `GET /api/friends`.
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<FriendshipView>>> {
    let of = (user.role != Role::Admin).then_some(user.id);
    let friendships = state.store.friendships(of).await?;
    Ok(Json(friendships.iter().map(friendship_view).collect()))
}

/// `PUT /api/friends/{viewer}`.
pub async fn grant_mine(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    CurrentUser(user): CurrentUser,
    Path(viewer): Path<String>,
) -> ApiResult<(StatusCode, Json<FriendshipView>)> {
    let owner = user.username.clone();
    grant_as(state, peer, user, owner, viewer).await
}

/// `DELETE /api/friends/{viewer}`.
pub async fn revoke_mine(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    CurrentUser(user): CurrentUser,
    Path(viewer): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = user.username.clone();
    revoke_as(state, peer, user, owner, viewer).await
}

/// `PUT /api/users/{owner}/friends/{viewer}`.
pub async fn grant(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    CurrentUser(user): CurrentUser,
    Path((owner, viewer)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<FriendshipView>)> {
    grant_as(state, peer, user, owner, viewer).await
}

/// `DELETE /api/users/{owner}/friends/{viewer}`.
pub async fn revoke(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    CurrentUser(user): CurrentUser,
    Path((owner, viewer)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    revoke_as(state, peer, user, owner, viewer).await
}

/// Users manage their own grants; admins anyone's.
fn may_manage(caller: &User, owner: &str) -> ApiResult<()> {
    if caller.role == Role::Admin || caller.username == owner {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

async fn grant_as(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: User,
    owner: String,
    viewer: String,
) -> ApiResult<(StatusCode, Json<FriendshipView>)> {
    may_manage(&caller, &owner)?;
    let now = SystemTime::now();
    let (friendship, new) = state.store.grant_friendship(&owner, &viewer, now).await?;
    state.friends.reload().await?;
    if !new {
        return Ok((StatusCode::OK, Json(friendship_view(&friendship))));
    }
    tracing::info!(by = %caller.username, %owner, %viewer, "friendship granted");
    audit(
        &state,
        peer,
        &caller,
        AuditKind::FriendGranted,
        201,
        &friendship,
        now,
    );
    Ok((StatusCode::CREATED, Json(friendship_view(&friendship))))
}

async fn revoke_as(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: User,
    owner: String,
    viewer: String,
) -> ApiResult<StatusCode> {
    may_manage(&caller, &owner)?;
    let friendship = state.store.revoke_friendship(&owner, &viewer).await?;
    state.friends.reload().await?;
    tracing::info!(by = %caller.username, %owner, %viewer, "friendship revoked");
    let now = SystemTime::now();
    audit(
        &state,
        peer,
        &caller,
        AuditKind::FriendRevoked,
        204,
        &friendship,
        now,
    );
    Ok(StatusCode::NO_CONTENT)
}

fn audit(
    state: &AppState,
    peer: SocketAddr,
    caller: &User,
    kind: AuditKind,
    code: u16,
    friendship: &Friendship,
    now: SystemTime,
) {
    let reason = match kind {
        AuditKind::FriendGranted => "friendship granted",
        _ => "friendship revoked",
    };
    state.audit.record(AuditEntry {
        peer: Some(peer.to_string()),
        username: Some(caller.username.clone()),
        code: Some(code),
        detail: Some(format!("{} -> {}", friendship.owner, friendship.viewer)),
        ..AuditEntry::new(now, kind, reason)
    });
}
