//! The certificate authority (`/api/ca…`, ADR 0017). `GET /api/ca` itself answers the CA
//! certificate (PEM or DER), not JSON; these are the admin views and requests.

use serde::{Deserialize, Serialize};

/// One CA of this install (`GET /api/ca/info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaView {
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
    /// The subject, e.g. `O=Porchlight, CN=Porchlight CA (nas)`.
    pub subject: String,
    /// Unix ms.
    pub not_before: i64,
    /// Unix ms.
    pub not_after: i64,
    /// `generated` or `imported`.
    pub origin: String,
    /// Unix ms: when it came to this install.
    pub created_at: i64,
    /// Unix ms: when another CA became active; `null` for the active one.
    pub retired_at: Option<i64>,
}

/// The TLS listener's certificate from our CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCertificateView {
    pub fingerprint: String,
    /// The names it is valid for (DNS names and IP addresses).
    pub names: Vec<String>,
    /// Unix ms.
    pub not_after: i64,
}

/// `GET /api/ca/info`, and the answer of `POST /api/ca/rotate` and `POST /api/ca/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaInfo {
    pub active: CaView,
    /// Retired CAs, most recently retired first: certificates they signed are still trusted
    /// by clients that have them.
    pub retired: Vec<CaView>,
    /// The MQTT TLS listener's certificate, when it is one of ours (not `[mqtt.tls]` files).
    pub mqtt_server: Option<ServerCertificateView>,
}

/// `POST /api/ca/import`: an existing CA to make active. The key is never answered or logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ImportCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}
