//! The MQTT link's settings over HTTP (admins only; ADR 0015).
//!
//! - `GET /api/settings/mqtt`: `{"enabled", "host", "port", "tls", "ca_file", "username",
//!   "client_id_prefix", "password_set", "client_id", "availability_topic", "status"}`;
//!   `client_id` is this process's id with the stored prefix; `status` is `{"state":
//!   "disconnected"|"connecting"|"connected"|"failed", "message", "since" (Unix ms),
//!   "client_id", "attempts"}`. The password is never answered.
//! - `PUT /api/settings/mqtt`: any of the settings fields; absent ones keep their stored value.
//!   `password` is write-only: absent keeps the stored one, `null` or `""` clears it. Bad fields
//!   are a 400 `{"errors": {"<field>": "<why>"}}`, every bad field at once. The link restarts
//!   with the new settings; the answer is the `GET` view.
//! - `POST /api/settings/mqtt/test`: an optional body like the `PUT`'s, over the stored
//!   settings (the stored password unless one is given); one connection under a fresh client
//!   id, so the live link is never evicted. Answers `{"result": "connected"|"refused"|
//!   "unreachable"|"tls_error", "message", "client_id"}` within a few seconds.
//!
//! - `GET /api/settings/mqtt/broker`: the embedded broker (`{"status": "running"|"stopped"|
//!   "disabled", "port", "tls_port", "connections"}`).
//!
//! - `GET /api/settings/mqtt/clients`: the embedded broker's connected clients, one
//!   `api::ConnectedClientView` each (client id, user, device, login method, address, protocol
//!   level, clean start, connected since, subscriptions), sorted by user then client id; `[]`
//!   when the broker is disabled. Read from the broker's own sessions; never a credential.
//!
//! The read-only fields of the `GET` view (`password_set`, `client_id`, `availability_topic`,
//! `status`) are accepted and ignored in a `PUT`, so a UI can send back what it read.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use porchlight_api::mqtt as api;
use porchlight_broker::LoginMethod;
use porchlight_broker::link::{LinkStatus, TestOutcome};
use porchlight_domain::mqtt_link::{LinkSettings, validate};
use porchlight_domain::secret::Secret;
use porchlight_store::{LinkPassword, StoredLink};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ApiJson};
use super::views::unix_ms;

fn status_view(status: &LinkStatus) -> api::LinkStatusView {
    api::LinkStatusView {
        state: status.state.as_str().to_owned(),
        message: status.message.clone(),
        since: unix_ms(status.since),
        client_id: status.client_id.clone(),
        attempts: status.attempts,
    }
}

async fn settings_view(state: &AppState, stored: &StoredLink) -> api::LinkSettingsView {
    let s = &stored.settings;
    let link = &state.mqtt_link;
    api::LinkSettingsView {
        enabled: s.enabled,
        host: s.host.clone(),
        port: s.port,
        tls: s.tls,
        ca_file: s.ca_file.clone(),
        username: s.username.clone(),
        client_id_prefix: s.client_id_prefix.clone(),
        password_set: stored.password.is_some(),
        client_id: link.client_id(&s.client_id_prefix),
        availability_topic: link.availability_topic(),
        status: status_view(&link.status().await),
    }
}

/// `GET /api/settings/mqtt/broker`: the embedded broker's status, ports and connected
/// clients, for the settings screen.
pub async fn broker(State(state): State<AppState>, Admin(_): Admin) -> Json<api::BrokerView> {
    let (status, connections) = match &state.broker {
        None => ("disabled", 0),
        Some(b) if b.is_running() => ("running", b.connection_count()),
        Some(_) => ("stopped", 0),
    };
    Json(api::BrokerView {
        status: status.to_owned(),
        port: state.owntracks_settings.mqtt_port,
        tls_port: state.owntracks_settings.mqtt_tls_port,
        cert_port: state.owntracks_settings.mqtt_cert_port,
        connections,
    })
}

/// `GET /api/settings/mqtt/clients`: who is connected to the embedded broker right now.
pub async fn clients(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<Vec<api::ConnectedClientView>>, ApiError> {
    let Some(broker) = &state.broker else {
        return Ok(Json(Vec::new()));
    };
    let clients = broker.connected_clients().await;
    // Device names: one read, only when some client logged in as a device.
    let devices: HashMap<i64, String> = if clients.iter().any(|c| c.identity.device_id.is_some()) {
        state
            .store
            .list_devices(None)
            .await?
            .into_iter()
            .map(|d| (d.id, d.name))
            .collect()
    } else {
        HashMap::new()
    };
    let mut views: Vec<api::ConnectedClientView> = clients
        .into_iter()
        .map(|c| api::ConnectedClientView {
            device: c
                .identity
                .device_id
                .and_then(|id| devices.get(&id).cloned()),
            login: match c.identity.login {
                LoginMethod::Password => "password",
                LoginMethod::DeviceKey => "device_key",
                LoginMethod::Certificate => "certificate",
            }
            .to_owned(),
            peer: c.peer.map(|p| p.to_string()),
            protocol: c.protocol.as_u8(),
            clean_start: c.clean_start,
            connected_since: unix_ms(c.connected_at).div_euclid(1000),
            subscriptions: c.subscriptions,
            username: c.identity.username,
            client_id: c.client_id,
        })
        .collect();
    views.sort_by(|a, b| (&a.username, &a.client_id).cmp(&(&b.username, &b.client_id)));
    Ok(Json(views))
}

/// A `PUT` (or test) body: absent fields keep their stored value.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    enabled: Option<bool>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    ca_file: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    username: Option<Option<String>>,
    client_id_prefix: Option<String>,
    #[serde(default, deserialize_with = "present")]
    password: Option<Option<String>>,
    // Read-only fields of the GET view, ignored.
    #[serde(default, rename = "password_set")]
    _password_set: Option<Value>,
    #[serde(default, rename = "client_id")]
    _client_id: Option<Value>,
    #[serde(default, rename = "availability_topic")]
    _availability_topic: Option<Value>,
    #[serde(default, rename = "status")]
    _status: Option<Value>,
}

/// A field that is present (`null` included) is `Some`; an absent one stays `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl SettingsChange {
    fn apply(&self, stored: &LinkSettings) -> LinkSettings {
        let mut s = stored.clone();
        if let Some(v) = self.enabled {
            s.enabled = v;
        }
        if let Some(v) = &self.host {
            s.host = v.trim().to_owned();
        }
        if let Some(v) = self.port {
            s.port = v;
        }
        if let Some(v) = self.tls {
            s.tls = v;
        }
        if let Some(v) = &self.ca_file {
            s.ca_file = v.clone();
        }
        if let Some(v) = &self.username {
            s.username = v.clone();
        }
        if let Some(v) = &self.client_id_prefix {
            s.client_id_prefix = v.clone();
        }
        s
    }

    fn password(&self) -> LinkPassword {
        match &self.password {
            None => LinkPassword::Keep,
            Some(None) => LinkPassword::Clear,
            Some(Some(p)) if p.is_empty() => LinkPassword::Clear,
            Some(Some(p)) => LinkPassword::Set(Secret::new(p.clone())),
        }
    }

    fn new_password(&self) -> Option<&str> {
        self.password.as_ref().and_then(|p| p.as_deref())
    }
}

/// 400 with `{"errors": {field: message}}`.
fn field_errors(errors: porchlight_domain::mqtt_link::FieldErrors) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "errors": errors }))).into_response()
}

/// `GET /api/settings/mqtt`.
pub async fn get(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<api::LinkSettingsView>, ApiError> {
    let stored = state.mqtt_link.stored().await?;
    Ok(Json(settings_view(&state, &stored).await))
}

/// `PUT /api/settings/mqtt`.
pub async fn put(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(change): ApiJson<SettingsChange>,
) -> Result<Response, ApiError> {
    let stored = state.mqtt_link.stored().await?;
    let settings = change.apply(&stored.settings);
    if let Err(errors) = validate(&settings, change.new_password()) {
        return Ok(field_errors(errors));
    }
    let stored = state.mqtt_link.update(&settings, change.password()).await?;
    tracing::info!(by = %caller.username, enabled = settings.enabled, host = %settings.host, port = settings.port, "MQTT link settings changed");
    Ok(Json(settings_view(&state, &stored).await).into_response())
}

/// `POST /api/settings/mqtt/test`.
pub async fn test(
    State(state): State<AppState>,
    Admin(_): Admin,
    body: Bytes,
) -> Result<Response, ApiError> {
    let change: SettingsChange = if body.iter().all(u8::is_ascii_whitespace) {
        SettingsChange::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?
    };
    let stored = state.mqtt_link.stored().await?;
    let mut settings = change.apply(&stored.settings);
    // A test connects whether or not the link is enabled: a host is needed either way.
    settings.enabled = true;
    if let Err(errors) = validate(&settings, change.new_password()) {
        return Ok(field_errors(errors));
    }
    let password = match change.password() {
        LinkPassword::Keep => stored.password,
        LinkPassword::Clear => None,
        LinkPassword::Set(p) => Some(p),
    };
    let (client_id, outcome) = state.mqtt_link.test(&settings, password).await;
    let result = match &outcome {
        TestOutcome::Connected => "connected",
        TestOutcome::Refused(_) => "refused",
        TestOutcome::Unreachable(_) => "unreachable",
        TestOutcome::Tls(_) => "tls_error",
    };
    Ok(Json(api::TestResult {
        result: result.to_owned(),
        message: outcome.message(),
        client_id,
    })
    .into_response())
}
