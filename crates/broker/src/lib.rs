//! porchlight-broker (stub)
