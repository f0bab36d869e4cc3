//! porchlight-ui (stub)
