//! porchlight-store (stub)
