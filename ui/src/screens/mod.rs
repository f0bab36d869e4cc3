//! The map screens, each a self-contained component that takes the [`crate::api::Session`]:
//! [`live::LivePage`] (where everyone is now), [`history::HistoryPage`] (where a device was)
//! and [`devices::DevicesPage`] (adding phones, commands, friends). Each keeps its texts in its
//! own `text` module.

pub mod devices;
pub mod history;
pub mod live;
pub(crate) mod when;
