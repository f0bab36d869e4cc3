//! porchlight-domain (stub)
