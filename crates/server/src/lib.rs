//! porchlight-server (stub)
