//! porchlight-domain: pure domain types and rules (no I/O).

pub mod acl;
