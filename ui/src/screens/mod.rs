//! One module per screen, each a self-contained component with its user-visible text in a
//! `mod text` at its top. The map, history and devices screens (`live`, `history`, `devices`)
//! come from the ui-maps branch.

pub mod alarm;
pub mod alarm_settings;
pub mod audit;
pub mod mqtt;
pub mod profile;
pub mod users;
