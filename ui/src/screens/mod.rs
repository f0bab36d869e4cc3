//! One module per screen, each a self-contained component with its user-visible text in a
//! `mod text` at its top: [`live::LivePage`] (where everyone is now), [`history::HistoryPage`]
//! (where a device was), [`devices::DevicesPage`] (adding phones, commands, friends), the alarm
//! panel and its settings, MQTT settings, client certificates and the certificate authority,
//! profile, users and audit.

pub mod alarm;
pub mod alarm_settings;
pub mod audit;
pub mod ca_settings;
pub mod certificates;
pub mod devices;
pub mod history;
pub mod live;
pub mod mqtt;
pub mod profile;
pub mod users;
pub(crate) mod when;

use crate::api::ApiError;

/// The message for a failed request (`what` says which). A 401 never gets here: the API
/// client sends the user to the login page and back (`api::on_signed_out`).
pub(crate) fn failure(what: &str, error: &ApiError) -> String {
    format!("{what} {error}")
}
