//! Account administration over HTTP: users (admin), MQTT devices (owner or admin), API tokens
//! (own), and the audit log (admin). Secrets (generated passwords, device keys, tokens) appear
//! in exactly one response: the one that created them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use porchlight_domain::Role;
use porchlight_domain::secret::Secret;
use porchlight_store::random_password;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Admin, CurrentUser};
use super::error::{ApiError, ApiJson, ApiResult};
use super::views::{ApiTokenView, AuditEntryView, DeviceView, UserView, views};

#[derive(Deserialize)]
pub struct NewToken {
    name: String,
}

pub async fn list_tokens(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<ApiTokenView>>> {
    Ok(Json(views(&state.store.list_api_tokens(user.id).await?)))
}

pub async fn create_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (meta, token) = state.store.create_api_token(user.id, &req.name).await?;
    tracing::info!(username = %user.username, token = %token.masked(), "API token created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token.expose(), "info": ApiTokenView::from(&meta) })),
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    state.store.revoke_api_token(user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_users(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(views(&state.store.list_users().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    #[serde(default = "default_role")]
    role: Role,
    /// Omitted: a random password is generated and returned once.
    password: Option<String>,
}

fn default_role() -> Role {
    Role::User
}

pub async fn create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let generated = req.password.is_none();
    let password = req
        .password
        .map(Secret::new)
        .unwrap_or_else(random_password);
    let user = state
        .store
        .create_user(&req.username, req.role, &password)
        .await?;
    tracing::info!(by = %admin.username, username = %user.username, role = ?user.role, "user created");
    let mut body = json!({ "user": UserView::from(&user) });
    if generated {
        body["password"] = json!(password.expose());
    }
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn remove_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    let (user, _devices) = state.store.remove_user(&username).await?;
    if let Some(broker) = &state.broker {
        broker.disconnect_user(user.id).await;
    }
    tracing::info!(by = %admin.username, %username, "user removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct NewPassword {
    password: String,
}

/// An admin may set anyone's password; a user only their own.
pub async fn set_password(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path(username): Path<String>,
    ApiJson(req): ApiJson<NewPassword>,
) -> ApiResult<StatusCode> {
    if caller.role != Role::Admin && caller.username != username {
        return Err(ApiError::Forbidden);
    }
    state
        .store
        .set_password(&username, &Secret::new(req.password))
        .await?;
    tracing::info!(by = %caller.username, %username, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_devices(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<DeviceView>>> {
    let scope = (user.role != Role::Admin).then_some(user.id);
    Ok(Json(views(&state.store.list_devices(scope).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    name: String,
    /// Only admins may add devices for someone else.
    username: Option<String>,
}

pub async fn add_device(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    ApiJson(req): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let owner = req.username.unwrap_or_else(|| caller.username.clone());
    if owner != caller.username && caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let (device, key) = state.store.add_device(&owner, &req.name).await?;
    tracing::info!(by = %caller.username, owner = %owner, device = %device.name, key = %key.masked(), "device added");
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "device": DeviceView::from(&device), "mqtt_username": owner, "mqtt_password": key.expose() }),
        ),
    ))
}

/// Removes a device and ends its live MQTT session.
pub async fn remove_device(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
    Path((username, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if username != caller.username && caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let device = state.store.remove_device(&username, &name).await?;
    let kicked = match &state.broker {
        Some(broker) => broker.disconnect_device(device.id).await,
        None => 0,
    };
    tracing::info!(by = %caller.username, %username, device = %name, kicked, "device removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

pub async fn audit(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntryView>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let page = state.store.audit_page(limit, q.before).await?;
    Ok(Json(page.into_iter().map(AuditEntryView::from).collect()))
}
