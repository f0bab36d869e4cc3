//! The alarm: PIN codes (`codes.rs`).

pub mod codes;
