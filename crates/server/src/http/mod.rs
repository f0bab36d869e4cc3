//! The HTTP side: JSON API under `/api` (with the CA certificate download, `GET /api/ca`), `/health`, OwnTracks HTTP mode (`POST /pub`), the
//! live feed (`GET /ws/live`, a WebSocket: OwnTracks and the alarm's status), and the web
//! UI's files everywhere else; with `[http] tls`, over HTTPS on the same port (`tls.rs`).
//!
//! Architecture invariant: only this module knows HTTP and JSON shapes. Handlers call the store
//! and the broker control; they hold no state of their own beyond [`AppState`].

mod accounts;
mod alarm;
mod alarm_codes;
mod assets;
mod auth;
mod ca;
mod cards;
mod certificates;
mod commands;
mod error;
mod friends;
mod history;
mod live;
mod mqtt_settings;
mod onboarding;
mod owntracks_devices;
mod owntracks_keys;
pub(crate) mod owntracks_pub;
mod recorder;
pub(crate) mod tls;
mod tracks;
mod ui_config;
mod views;
mod visibility;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post, put};
use porchlight_domain::session::SessionPolicy;
use porchlight_store::Store;
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::BrokerControl;
use crate::audit_sink::AuditSink;
use crate::login::LoginGate;

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The embedded broker, when enabled: used to end sessions of removed devices/users and
    /// for health.
    pub broker: Option<Arc<dyn BrokerControl>>,
    pub audit: AuditSink,
    /// The password policy shared with MQTT logins: attempts counted per address and per
    /// user name before argon2 runs, the process-wide argon2 limit, remembered credentials.
    pub logins: Arc<LoginGate>,
    pub sessions: SessionPolicy,
    /// Counters of the OwnTracks ingest service, for `/health`.
    pub owntracks: crate::owntracks::IngestStats,
    /// OwnTracks HTTP mode (`POST /pub`) hands messages to the ingest service through this.
    pub ingest: crate::owntracks::Submitter,
    /// What the ingest service committed, for `/ws/live`.
    pub live: crate::owntracks::LiveFeed,
    /// Becomes true when the server shuts down; open WebSockets close on it.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// The certificate authority: its certificate for download, rotation and import.
    pub ca: Arc<crate::ca::CaService>,
    /// Asks for a new server certificate now (after a CA change, or an admin's request).
    pub renewal: crate::cert_renewal::RenewalHandle,
    /// The broker's bus (`None` when the broker is disabled): commands to MQTT phones.
    pub bus: Option<Arc<dyn porchlight_broker::Bus>>,
    /// Commands to phones and device onboarding.
    pub owntracks_settings: OwnTracksSettings,
    /// Who granted whom the sight of their OwnTracks devices (the visibility rule's input).
    pub friends: Arc<crate::friends::Friends>,
    /// Alarm PIN verification and code changes, with the process's one wrong-PIN throttle
    /// (the alarm's keypad, Home Assistant and API paths share it).
    pub pins: Arc<crate::alarm::codes::PinCheck>,
    /// The running alarm: its status, commands, sensors' live values, reload after a change,
    /// and its status changes for `/ws/live`.
    pub alarm: crate::alarm::AlarmHandle,
    /// The alarm's status as `/ws/live`'s `alarm` message, built once per change
    /// ([`live_feed`]).
    pub alarm_live: tokio::sync::watch::Receiver<Option<Arc<str>>>,
    /// The link to an external MQTT broker: its settings, status and test connection.
    pub mqtt_link: crate::mqtt_link::MqttLinkHandle,
    /// `[ui]` of the config: the map's tiles, for `GET /api/ui/config`.
    pub map: Arc<porchlight_api::owntracks::MapSettings>,
}

pub(crate) use alarm::live_feed;

/// What the OwnTracks endpoints need to know about this server beyond the store.
#[derive(Debug, Clone)]
pub struct OwnTracksSettings {
    /// How long a command queued for an HTTP-mode phone waits for its next `/pub`.
    pub command_ttl: std::time::Duration,
    /// `[owntracks] public_host`: the name written into `.otrc` files (else the request's
    /// `Host`).
    pub public_host: Option<String>,
    /// The HTTP port in use (for the `/pub` URL when `public_host` is set).
    pub http_port: u16,
    /// The plain MQTT port in use, when the broker is enabled.
    pub mqtt_port: Option<u16>,
    /// The MQTT-over-TLS port phones are sent to: a `[mqtt.tls]` listener's (the operator's
    /// own certificate), or the built-in CA's listener when HTTPS is on (`https`: the
    /// household has opted into trusting the built-in CA; onboarding then names its
    /// certificate, `ca_url`).
    pub mqtt_tls_port: Option<u16>,
    /// The certificate listener's port (client certificates from the built-in CA), when on.
    pub mqtt_cert_port: Option<u16>,
    /// Whether the HTTP port speaks HTTPS (`[http] tls`): HTTP-mode phones get `https://`.
    pub https: bool,
    /// Whether the MQTT TLS listener carries the built-in CA's certificate (not `[mqtt.tls]`
    /// files): a phone sent there must trust our CA.
    pub mqtt_tls_builtin: bool,
}

/// API bodies are small; larger requests are refused before parsing.
const MAX_API_BODY: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route(
            "/tokens",
            get(accounts::list_tokens).post(accounts::create_token),
        )
        .route("/tokens/{id}", delete(accounts::revoke_token))
        .route(
            "/users",
            get(accounts::list_users).post(accounts::create_user),
        )
        .route("/users/{username}", delete(accounts::remove_user))
        .route("/users/{username}/password", put(accounts::set_password))
        .route(
            "/users/{username}/location-retention",
            get(history::retention).put(history::set_retention),
        )
        .route(
            "/devices",
            get(accounts::list_devices).post(accounts::add_device),
        )
        .route(
            "/devices/{username}/{name}",
            delete(accounts::remove_device),
        )
        .route("/audit", get(accounts::audit))
        .route("/friends", get(friends::list))
        .route(
            "/friends/{viewer}",
            put(friends::grant_mine).delete(friends::revoke_mine),
        )
        .route(
            "/users/{owner}/friends/{viewer}",
            put(friends::grant).delete(friends::revoke),
        )
        .route("/ca", get(ca::download))
        .route("/ca/info", get(ca::info))
        .route("/ca/rotate", post(ca::rotate))
        .route("/ca/import", post(ca::import))
        .route("/ca/renew", post(ca::renew))
        .route(
            "/certificates",
            get(certificates::list).post(certificates::issue),
        )
        .route("/certificates/{serial}", delete(certificates::revoke))
        .route("/ui/config", get(ui_config::get))
        .route("/owntracks/card", get(cards::get).put(cards::set))
        .route("/owntracks/devices", get(owntracks_devices::list))
        .route("/owntracks/devices/{id}/track", get(tracks::track))
        .route(
            "/owntracks/devices/{id}/transitions",
            get(owntracks_devices::transitions),
        )
        .route(
            "/owntracks/devices/{id}/waypoints",
            get(owntracks_devices::waypoints),
        )
        .route("/owntracks/devices/{id}/commands", post(commands::send))
        .route("/owntracks/devices/{id}", delete(history::delete_device))
        .route(
            "/owntracks/devices/{id}/locations",
            delete(history::delete_points),
        )
        .route(
            "/owntracks/devices/{id}/key",
            put(owntracks_keys::set_by_id).delete(owntracks_keys::remove_by_id),
        )
        .route("/owntracks/keys", get(owntracks_keys::list))
        .route("/alarm", get(alarm::status))
        .route("/alarm/arm", post(alarm::arm))
        .route("/alarm/disarm", post(alarm::disarm))
        .route("/alarm/events", get(alarm::events))
        .route("/alarm/sensors", get(alarm::sensors))
        .route(
            "/alarm/sensors/{id}",
            put(alarm::put_sensor).delete(alarm::delete_sensor),
        )
        .route(
            "/alarm/settings",
            get(alarm::settings).put(alarm::put_settings),
        )
        .route(
            "/alarm/codes",
            get(alarm_codes::list).post(alarm_codes::create),
        )
        .route(
            "/alarm/codes/{id}",
            patch(alarm_codes::update).delete(alarm_codes::remove),
        )
        .route(
            "/settings/mqtt",
            get(mqtt_settings::get).put(mqtt_settings::put),
        )
        .route("/settings/mqtt/test", post(mqtt_settings::test))
        .route("/settings/mqtt/broker", get(mqtt_settings::broker))
        .route("/settings/mqtt/clients", get(mqtt_settings::clients))
        .route(
            "/owntracks/keys/{username}/{device}",
            put(owntracks_keys::set_by_name).delete(owntracks_keys::remove_by_name),
        )
        // The OwnTracks Recorder's read API (its paths, parameters and shapes).
        .route("/0/version", get(recorder::version))
        .route("/0/monitor", get(recorder::monitor))
        .route("/0/list", get(recorder::list).post(recorder::list))
        .route("/0/last", get(recorder::last).post(recorder::last))
        .route(
            "/0/locations",
            get(recorder::locations).post(recorder::locations),
        )
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::slide_session_cookie,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ws/live", get(live::live))
        .route(
            "/pub",
            post(owntracks_pub::publish).layer(DefaultBodyLimit::max(
                porchlight_domain::owntracks::MAX_PAYLOAD_BYTES,
            )),
        )
        .nest("/api", api)
        .fallback(assets::serve)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .with_state(state)
}

/// `GET /health`: 200 when the database answers and the broker (if enabled) runs, else 503.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let db_ok = state.store.is_healthy().await;
    let (broker, broker_ok, connections) = match &state.broker {
        None => ("disabled", true, 0),
        Some(b) if b.is_running() => ("running", true, b.connection_count()),
        Some(_) => ("stopped", false, 0),
    };
    let healthy = db_ok && broker_ok;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            "version": env!("CARGO_PKG_VERSION"),
            "database": if db_ok { "ok" } else { "error" },
            "broker": broker,
            "mqtt_connections": connections,
            "owntracks": owntracks_counts(&state.owntracks),
        })),
    )
}

/// The ingest counters under `/health`'s `owntracks` key.
fn owntracks_counts(stats: &crate::owntracks::IngestStats) -> serde_json::Value {
    let c = stats.snapshot();
    json!({
        "received": c.received,
        "stored": c.stored,
        "duplicates": c.duplicates,
        "ignored": c.ignored,
        "store_failures": c.store_failures,
        "rejected": c.rejected,
    })
}

/// Serves `router` on `listener` until `shutdown` resolves: plain HTTP, or with `tls` HTTPS
/// and plain HTTP side by side on the one port ([`tls::serve`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tls::TlsSwitch>>,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(tls) = tls {
        return tls::serve(listener, tls, state, shutdown).await;
    }
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
