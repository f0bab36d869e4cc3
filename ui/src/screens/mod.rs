//! The map screens, each a self-contained component that takes the [`crate::api::Session`]:
//! [`live::LivePage`] (where everyone is now), [`history::HistoryPage`] (where a device was)
//! and [`devices::DevicesPage`] (adding phones, commands, friends). Each keeps its texts in its
//! own `text` module.

pub mod devices;
pub mod history;
pub mod live;
pub(crate) mod when;

use crate::api::ApiError;

/// The message for a failed request (`what` says which). A 401 means the session ended: the
/// page reloads, which shows the sign-in form and then the app again (the history screen's
/// selection is in the URL, so it comes back as it was).
pub(crate) fn failure(what: &str, error: &ApiError) -> String {
    if matches!(error, ApiError::Server { status: 401, .. })
        && let Some(window) = web_sys::window()
    {
        let _ = window.location().reload();
    }
    format!("{what} {error}")
}
