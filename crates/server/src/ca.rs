//! The certificate authority service (issue 15, ADR 0017): this install's CA, kept across
//! starts, and the server certificate it gives the MQTT-over-TLS listener (and HTTPS, with
//! `[http] tls`: the same certificate, `http::tls`).
//!
//! Where things are:
//! - `<data dir>/master.key` (0600, made on first start): the key that seals every private key
//!   below ([`porchlight_ca::MasterKey`]). The one secret to protect; a backup of the database
//!   alone leaks no key.
//! - the store's `certificate_authorities` (migration 0012): each CA's certificate, whether it
//!   was generated or imported, which one is active, when the others were retired. Retired CAs
//!   stay listed so the certificates they signed stay trusted until reissued.
//! - `<data dir>/ca/<first 16 hex of the fingerprint>.key` (0600): each CA's private key, sealed
//!   (bound to its certificate), written to a temporary file, synced, then renamed into place.
//!   Never written in clear, never logged.
//! - `<data dir>/ca/ca.pem`: the active CA's certificate (public), for people who look for it
//!   on disk; `GET /api/ca` and `porchlight ca export` answer the same.
//! - `<data dir>/ca/mqtt-server.pem` and `mqtt-server.key` (sealed like the CA key): the MQTT
//!   TLS listener's certificate, reissued at start when missing, not from the active CA,
//!   expiring within [`RENEW_BEFORE`], or when the names it must carry changed
//!   ([`server_names`]).
//!
//! [`Authorities`] is that storage, used by the service and by the CLI (`porchlight ca …`,
//! which may run while the server is stopped); [`CaService`] is the running server's: the
//! active CA in memory, rotation and import serialised. The rules (what a CA and a
//! certificate are) live in `porchlight-ca`, the SQL in the store; this module connects them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use porchlight_ca::{Authority, CertificateInfo, MasterKey, San};
use porchlight_store::{CaOrigin, ClientCertificate, NewClientCertificate, Store, StoredCa};
use zeroize::Zeroizing;

use crate::config::Config;

/// A CA made here is valid this long.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A server certificate is issued for this long…
pub const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// …and reissued at start once it expires within this.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// A client certificate is issued for this long (never beyond the CA's own expiry).
pub const CLIENT_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);

const SERVER_CERT_FILE: &str = "mqtt-server.pem";
const SERVER_KEY_FILE: &str = "mqtt-server.key";
const CA_CERT_FILE: &str = "ca.pem";

/// Why the CA could not do something. Messages are fit for an operator and never hold key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// What was given to import is not a usable CA (bad PEM, not a CA, key mismatch, expired).
    #[error("{0}")]
    Rejected(porchlight_ca::Error),
    #[error("certificate authority: {0}")]
    Ca(#[from] porchlight_ca::Error),
    #[error("sealing a private key: {0}")]
    Seal(#[from] porchlight_ca::SealError),
    #[error(transparent)]
    Store(#[from] porchlight_store::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "the active CA's key {path} cannot be used ({reason}); restore it (and master.key) from a backup, \
         or make a new CA with `porchlight ca rotate` (certificates of the old one must then be reissued)"
    )]
    ActiveKey { path: PathBuf, reason: String },
    #[error(
        "the active CA expired on {0}; make a new one with `porchlight ca rotate` (or import one), \
         then give clients its certificate"
    )]
    Expired(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CaError {
    let what = what.into();
    move |source| CaError::Io { what, source }
}

/// One CA of this install, as listed.
#[derive(Debug, Clone)]
pub struct CaEntry {
    pub stored: StoredCa,
    pub info: CertificateInfo,
}

/// A server certificate with its private key (zeroized when dropped; never logged).
pub struct ServerCertificate {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
    pub info: CertificateInfo,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("fingerprint", &self.info.fingerprint)
            .field("sans", &self.info.sans)
            .finish_non_exhaustive()
    }
}

/// The CAs kept by this install: the store's list, the sealed key files and the master key.
pub struct Authorities {
    store: Store,
    /// `<data dir>/ca`.
    dir: PathBuf,
    master: MasterKey,
}

impl std::fmt::Debug for Authorities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorities")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Authorities {
    /// Loads the master key of `data_dir` (creating it, 0600, the first time) and makes
    /// `<data dir>/ca` (0700).
    pub fn open(store: Store, data_dir: &Path) -> Result<Authorities, CaError> {
        let (master, created) = MasterKey::load_or_create(&data_dir.join("master.key"))?;
        if created {
            tracing::info!(path = %data_dir.join("master.key").display(), "created the master key that seals private keys");
        }
        let dir = data_dir.join("ca");
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(format!("making {} owner-only", dir.display())))?;
        }
        Ok(Authorities { store, dir, master })
    }

    /// `<data dir>/ca`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the active CA's certificate is kept as a file (public).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The sealed key file of the CA `fingerprint`.
    pub fn key_path(&self, fingerprint: &str) -> PathBuf {
        let prefix: String = fingerprint.chars().take(16).collect();
        self.dir.join(format!("{prefix}.key"))
    }

    /// The active CA's certificate as stored (no key needed), if there is one yet.
    pub async fn active_certificate(&self) -> Result<Option<StoredCa>, CaError> {
        Ok(self.store.active_ca().await?)
    }

    /// The active CA with its key, if there is one yet.
    pub async fn active(&self) -> Result<Option<Authority>, CaError> {
        let Some(stored) = self.store.active_ca().await? else {
            return Ok(None);
        };
        let path = self.key_path(&stored.fingerprint);
        let sealed = std::fs::read(&path).map_err(|e| CaError::ActiveKey {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let authority = Authority::open(&stored.cert_pem, &sealed, &self.master).map_err(|e| {
            CaError::ActiveKey {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        self.write_ca_pem(&authority)?;
        Ok(Some(authority))
    }

    /// Every CA: the active one first, then the retired ones, latest retired first.
    pub async fn list(&self) -> Result<Vec<CaEntry>, CaError> {
        self.store
            .list_cas()
            .await?
            .into_iter()
            .map(|stored| {
                let info = porchlight_ca::inspect(&stored.cert_pem)?;
                Ok(CaEntry { stored, info })
            })
            .collect()
    }

    /// A new CA, made active; the previous one (if any) is retired.
    pub async fn generate(&self, now: SystemTime) -> Result<Authority, CaError> {
        let name = format!(
            "Porchlight CA ({})",
            host_name().unwrap_or_else(|| "home".into())
        );
        let authority = Authority::generate(&name, now, CA_VALIDITY)?;
        self.keep(&authority, CaOrigin::Generated, now).await?;
        tracing::info!(
            fingerprint = authority.fingerprint(),
            common_name = authority.common_name(),
            "made a new certificate authority; it is now the active one"
        );
        Ok(authority)
    }

    /// An existing CA (PEM certificate and PEM private key), made active; the previous one
    /// is retired. [`CaError::Rejected`] says why one is not usable.
    pub async fn import(
        &self,
        cert_pem: &str,
        key_pem: &str,
        now: SystemTime,
    ) -> Result<Authority, CaError> {
        let authority = Authority::import(cert_pem, key_pem, now).map_err(CaError::Rejected)?;
        self.keep(&authority, CaOrigin::Imported, now).await?;
        tracing::info!(
            fingerprint = authority.fingerprint(),
            common_name = authority.common_name(),
            "imported a certificate authority; it is now the active one"
        );
        Ok(authority)
    }

    /// The key first (sealed, synced), then the row that makes it active: a crash in between
    /// leaves an unused file, never an active CA without its key.
    async fn keep(
        &self,
        authority: &Authority,
        origin: CaOrigin,
        now: SystemTime,
    ) -> Result<(), CaError> {
        let sealed = authority.sealed_key(&self.master)?;
        write_private(&self.key_path(authority.fingerprint()), &sealed)?;
        self.store
            .activate_ca(authority.fingerprint(), authority.cert_pem(), origin, now)
            .await?;
        self.write_ca_pem(authority)
    }

    fn write_ca_pem(&self, authority: &Authority) -> Result<(), CaError> {
        let path = self.ca_pem_path();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(authority.cert_pem()) {
            write_private(&path, authority.cert_pem().as_bytes())?;
        }
        Ok(())
    }

    /// The server certificate from `ca` for exactly `names`: the kept one if it is still
    /// right, else a new one (kept for the next start). The second value is true when it was
    /// (re)issued now.
    pub fn server_certificate(
        &self,
        ca: &Authority,
        names: &[San],
        now: SystemTime,
    ) -> Result<(ServerCertificate, bool), CaError> {
        let wanted: BTreeSet<String> = names.iter().map(san_text).collect();
        match self.kept_server_certificate(ca) {
            Ok(kept) => {
                let have: BTreeSet<String> = kept.info.sans.iter().map(san_text).collect();
                let fresh = kept
                    .info
                    .not_after
                    .duration_since(now)
                    .is_ok_and(|left| left > RENEW_BEFORE);
                if have == wanted && fresh {
                    return Ok((kept, false));
                }
                tracing::info!(
                    names_changed = have != wanted,
                    expiring = !fresh,
                    "reissuing the MQTT TLS server certificate"
                );
            }
            Err(reason) => {
                tracing::info!(%reason, "issuing the MQTT TLS server certificate");
            }
        }
        Ok((self.issue_server_certificate(ca, names, now)?, true))
    }

    /// A new server certificate from `ca` for `names`, kept for the next start.
    pub fn issue_server_certificate(
        &self,
        ca: &Authority,
        names: &[San],
        now: SystemTime,
    ) -> Result<ServerCertificate, CaError> {
        let wanted: BTreeSet<String> = names.iter().map(san_text).collect();
        let common_name = host_name().unwrap_or_else(|| "porchlight".into());
        let issued = ca.issue_server(&common_name, names, now, SERVER_VALIDITY)?;
        let sealed = self.master.seal(
            issued.key_pem.as_bytes(),
            &server_key_context(&issued.fingerprint),
        )?;
        write_private(&self.dir.join(SERVER_KEY_FILE), &sealed)?;
        write_private(&self.dir.join(SERVER_CERT_FILE), issued.cert_pem.as_bytes())?;
        let info = ca.verify_issued(&issued.cert_pem)?;
        tracing::info!(fingerprint = %info.fingerprint, names = ?wanted, "issued the MQTT TLS server certificate");
        Ok(ServerCertificate {
            cert_pem: issued.cert_pem.clone(),
            key_pem: issued.key_pem.clone(),
            info,
        })
    }

    fn kept_server_certificate(&self, ca: &Authority) -> Result<ServerCertificate, String> {
        let cert_pem = std::fs::read_to_string(self.dir.join(SERVER_CERT_FILE))
            .map_err(|e| format!("no kept certificate: {e}"))?;
        let info = ca
            .verify_issued(&cert_pem)
            .map_err(|_| "the kept certificate is not from the active CA".to_owned())?;
        let sealed = std::fs::read(self.dir.join(SERVER_KEY_FILE))
            .map_err(|e| format!("no kept key: {e}"))?;
        let key = self
            .master
            .open(&sealed, &server_key_context(&info.fingerprint))
            .map_err(|e| format!("the kept key does not open: {e}"))?;
        let key_pem = Zeroizing::new(
            String::from_utf8(key.to_vec()).map_err(|_| "the kept key is not PEM".to_owned())?,
        );
        Ok(ServerCertificate {
            cert_pem,
            key_pem,
            info,
        })
    }
}

fn server_key_context(cert_fingerprint: &str) -> Vec<u8> {
    format!("porchlight server key for {cert_fingerprint}").into_bytes()
}

fn san_text(san: &San) -> String {
    match san {
        San::Dns(name) => name.to_ascii_lowercase(),
        San::Ip(ip) => ip.to_string(),
    }
}

/// The running server's CA: the active [`Authority`] in memory, rotation and import one at a
/// time.
pub struct CaService {
    authorities: Authorities,
    /// The active CA; replaced by [`CaService::rotate`] and [`CaService::import`].
    active: RwLock<Arc<Authority>>,
    /// Serialises rotation and import, so two at once cannot both think they retired the other.
    changes: tokio::sync::Mutex<()>,
    /// The MQTT listener's certificate as issued at start (for `GET /api/ca/info`).
    mqtt_server: RwLock<Option<CertificateInfo>>,
}

impl std::fmt::Debug for CaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaService")
            .field("authorities", &self.authorities)
            .finish_non_exhaustive()
    }
}

impl CaService {
    /// Loads the master key and the active CA of `data_dir`, or makes both on first start.
    pub async fn start(
        store: Store,
        data_dir: &Path,
        now: SystemTime,
    ) -> Result<CaService, CaError> {
        let authorities = Authorities::open(store, data_dir)?;
        let active = match authorities.active().await? {
            Some(active) => {
                tracing::info!(
                    fingerprint = active.fingerprint(),
                    "certificate authority loaded"
                );
                active
            }
            None => authorities.generate(now).await?,
        };
        Ok(CaService {
            authorities,
            active: RwLock::new(Arc::new(active)),
            changes: tokio::sync::Mutex::new(()),
            mqtt_server: RwLock::new(None),
        })
    }

    pub fn authorities(&self) -> &Authorities {
        &self.authorities
    }

    /// The CA that signs now.
    pub fn active(&self) -> Arc<Authority> {
        match self.active.read() {
            Ok(active) => active.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_active(&self, authority: Authority) -> Arc<Authority> {
        let authority = Arc::new(authority);
        match self.active.write() {
            Ok(mut active) => *active = authority.clone(),
            Err(poisoned) => *poisoned.into_inner() = authority.clone(),
        }
        authority
    }

    /// A new CA becomes active; the old one is retired (still listed). The server certificate
    /// is then reissued from it by the renewal service (`cert_renewal`).
    pub async fn rotate(&self, now: SystemTime) -> Result<Arc<Authority>, CaError> {
        let _one = self.changes.lock().await;
        let authority = self.authorities.generate(now).await?;
        Ok(self.set_active(authority))
    }

    /// An existing CA becomes active ([`Authorities::import`]).
    pub async fn import(
        &self,
        cert_pem: &str,
        key_pem: &str,
        now: SystemTime,
    ) -> Result<Arc<Authority>, CaError> {
        let _one = self.changes.lock().await;
        let authority = self.authorities.import(cert_pem, key_pem, now).await?;
        Ok(self.set_active(authority))
    }

    /// The MQTT TLS listener's certificate for `names` from the active CA
    /// ([`Authorities::server_certificate`]); [`CaError::Expired`] once the CA has expired
    /// (warned about 90 days before).
    pub fn mqtt_server_certificate(
        &self,
        names: &[San],
        now: SystemTime,
    ) -> Result<ServerCertificate, CaError> {
        self.current_server_certificate(names, now)
            .map(|(certificate, _)| certificate)
    }

    /// [`CaService::mqtt_server_certificate`], and whether it was issued now.
    pub fn current_server_certificate(
        &self,
        names: &[San],
        now: SystemTime,
    ) -> Result<(ServerCertificate, bool), CaError> {
        self.server_certificate_from_active(names, now, false)
    }

    /// A new server certificate from the active CA, whatever the kept one's state.
    pub fn renew_server_certificate(
        &self,
        names: &[San],
        now: SystemTime,
    ) -> Result<(ServerCertificate, bool), CaError> {
        self.server_certificate_from_active(names, now, true)
    }

    fn server_certificate_from_active(
        &self,
        names: &[San],
        now: SystemTime,
        renew: bool,
    ) -> Result<(ServerCertificate, bool), CaError> {
        let active = self.active();
        match active.not_after().duration_since(now) {
            Err(_) => {
                return Err(CaError::Expired(
                    time::OffsetDateTime::from(active.not_after())
                        .date()
                        .to_string(),
                ));
            }
            Ok(left) if left < Duration::from_secs(90 * 24 * 3600) => {
                tracing::warn!(
                    days_left = left.as_secs() / (24 * 3600),
                    "the active CA expires soon: make a new one with `porchlight ca rotate` and give clients its certificate"
                );
            }
            Ok(_) => {}
        }
        let (certificate, issued) = if renew {
            (
                self.authorities
                    .issue_server_certificate(&active, names, now)?,
                true,
            )
        } else {
            self.authorities.server_certificate(&active, names, now)?
        };
        if let Ok(mut kept) = self.mqtt_server.write() {
            *kept = Some(certificate.info.clone());
        }
        Ok((certificate, issued))
    }

    /// A client certificate for `user`'s `device` from the active CA, valid `validity` from
    /// `now`, recorded in the store (without its key). Answers the certificate with its key
    /// (to hand over once) and the issuing CA.
    pub async fn issue_client(
        &self,
        user: &str,
        device: &str,
        now: SystemTime,
        validity: Duration,
    ) -> Result<(porchlight_ca::Issued, Arc<Authority>, ClientCertificate), CaError> {
        let active = self.active();
        let who = porchlight_ca::ClientSubject {
            user: user.to_owned(),
            device: device.to_owned(),
        };
        let issued = active.issue_client(&who, now, validity)?;
        let stored = self
            .authorities
            .store
            .record_client_certificate(NewClientCertificate {
                serial: issued.serial.clone(),
                fingerprint: issued.fingerprint.clone(),
                username: user.to_owned(),
                device: device.to_owned(),
                common_name: issued.common_name.clone(),
                ca_fingerprint: active.fingerprint().to_owned(),
                issued_at: now,
                expires_at: issued.not_after,
            })
            .await?;
        Ok((issued, active, stored))
    }

    /// The MQTT listener's certificate in use, if the listener uses one of ours.
    pub fn mqtt_server_info(&self) -> Option<CertificateInfo> {
        self.mqtt_server.read().ok().and_then(|kept| kept.clone())
    }
}

/// The names the server certificate carries: this machine's host name (and `<name>.local`
/// for mDNS), `localhost`, 127.0.0.1 and ::1, the addresses the MQTT and HTTP listeners bind
/// when they are specific ones, the LAN addresses the machine reaches the network from (IPv4 and IPv6),
/// `[owntracks] public_host`, and `[ca] server_names`. Sorted, without duplicates.
pub fn server_names(config: &Config) -> Vec<San> {
    let mut names: Vec<San> = Vec::new();
    let mut add = |san: San| {
        if !names.contains(&san) {
            names.push(san);
        }
    };
    if let Some(host) = host_name() {
        if !host.contains('.') {
            add(San::Dns(format!("{host}.local")));
        }
        add(San::Dns(host));
    }
    add(San::Dns("localhost".into()));
    add(San::Ip(IpAddr::from([127, 0, 0, 1])));
    add(San::Ip(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])));
    for bind in [config.mqtt.bind, config.http.bind] {
        if !bind.is_unspecified() {
            add(San::Ip(bind));
        }
    }
    for ip in lan_addresses() {
        add(San::Ip(ip));
    }
    for name in std::iter::once(config.owntracks.public_host.trim())
        .chain(config.ca.server_names.iter().map(|n| n.trim()))
        .filter(|n| !n.is_empty())
    {
        add(match name.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(name.to_ascii_lowercase()),
        });
    }
    names.sort_by_key(san_text);
    names
}

/// This machine's host name, if it can be read without a system call wrapper.
pub fn host_name() -> Option<String> {
    let from_file = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    };
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
}

/// The addresses this machine sends from towards the rest of the network: a UDP socket
/// "connected" to a documentation address (nothing is sent) is given the source address
/// the routing table picks. Loopback, unspecified and link-local ones are skipped.
fn lan_addresses() -> Vec<IpAddr> {
    let probe = |bind: &str, towards: &str| -> Option<IpAddr> {
        let socket = std::net::UdpSocket::bind(bind).ok()?;
        socket.connect(towards).ok()?;
        Some(socket.local_addr().ok()?.ip())
    };
    [
        probe("0.0.0.0:0", "192.0.2.1:9"),
        probe("[::]:0", "[2001:db8::1]:9"),
    ]
    .into_iter()
    .flatten()
    .filter(|ip| {
        !ip.is_loopback()
            && !ip.is_unspecified()
            && match ip {
                IpAddr::V4(v4) => !v4.is_link_local(),
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            }
    })
    .collect()
}

/// Writes `bytes` to `path` owner-only (0600): a temporary file beside it, synced, renamed
/// over `path`, and the directory synced, so `path` is always the old or the new content.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let what = |verb: &str| format!("{verb} {}", path.display());
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(what("replacing"))(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io(what("writing")))?;
    file.write_all(bytes).map_err(io(what("writing")))?;
    file.sync_all().map_err(io(what("syncing")))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(what("renaming into")))?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        // Best effort: some platforms cannot sync a directory.
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &Path) -> Store {
        Store::open(&dir.join("porchlight.db")).unwrap()
    }

    #[tokio::test]
    async fn the_first_start_makes_a_ca_and_the_next_one_opens_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let s = store(dir.path()).await;
        let first = CaService::start(s.clone(), dir.path(), now).await.unwrap();
        let fingerprint = first.active().fingerprint().to_owned();
        assert!(first.active().common_name().starts_with("Porchlight CA ("));
        let key = first.authorities().key_path(&fingerprint);
        let sealed = std::fs::read(&key).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for path in [key.clone(), dir.path().join("master.key")] {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
            }
        }
        drop(first);
        let again = CaService::start(s.clone(), dir.path(), now).await.unwrap();
        assert_eq!(again.active().fingerprint(), fingerprint);
        assert_eq!(s.list_cas().await.unwrap().len(), 1);

        // Without its master key the CA key does not open: a clear error, not a new CA.
        std::fs::remove_file(dir.path().join("master.key")).unwrap();
        let err = CaService::start(s.clone(), dir.path(), now)
            .await
            .unwrap_err();
        assert!(matches!(err, CaError::ActiveKey { .. }), "{err}");
        assert!(err.to_string().contains("porchlight ca rotate"), "{err}");
    }

    #[tokio::test]
    async fn rotation_retires_the_old_ca_and_import_refuses_what_is_not_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let s = store(dir.path()).await;
        let service = CaService::start(s.clone(), dir.path(), now).await.unwrap();
        let old = service.active().fingerprint().to_owned();
        let new = service.rotate(now).await.unwrap();
        assert_ne!(new.fingerprint(), old);
        assert_eq!(service.active().fingerprint(), new.fingerprint());
        let list = service.authorities().list().await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].stored.fingerprint, new.fingerprint());
        assert!(list[0].stored.active);
        assert_eq!(list[1].stored.fingerprint, old);
        assert!(list[1].stored.retired_at.is_some());
        assert_eq!(
            std::fs::read_to_string(service.authorities().ca_pem_path()).unwrap(),
            new.cert_pem()
        );

        let outside = Authority::generate("Imported", now, CA_VALIDITY).unwrap();
        let leaf = outside
            .issue_server("x", &[San::Dns("x".into())], now, SERVER_VALIDITY)
            .unwrap();
        let err = service
            .import(&leaf.cert_pem, &leaf.key_pem, now)
            .await
            .unwrap_err();
        assert!(matches!(err, CaError::Rejected(_)), "{err}");
        assert_eq!(service.active().fingerprint(), new.fingerprint());
    }

    /// `start()` then runs without the TLS listener (tests/e2e/ca.rs).
    #[tokio::test]
    async fn an_expired_ca_gives_no_server_certificate_and_names_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let s = store(dir.path()).await;
        let long_ago = now - CA_VALIDITY - Duration::from_secs(24 * 3600);
        Authorities::open(s.clone(), dir.path())
            .unwrap()
            .generate(long_ago)
            .await
            .unwrap();
        let service = CaService::start(s, dir.path(), now).await.unwrap();
        let err = service
            .mqtt_server_certificate(&[San::Dns("localhost".into())], now)
            .unwrap_err();
        assert!(matches!(err, CaError::Expired(_)), "{err}");
        assert!(err.to_string().contains("porchlight ca rotate"), "{err}");
        service.rotate(now).await.unwrap();
        assert!(
            service
                .mqtt_server_certificate(&[San::Dns("localhost".into())], now)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_server_certificate_is_kept_and_reissued_when_names_ca_or_expiry_change() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let s = store(dir.path()).await;
        let service = CaService::start(s, dir.path(), now).await.unwrap();
        let a = service.authorities();
        let names = vec![
            San::Dns("localhost".into()),
            San::Ip(IpAddr::from([127, 0, 0, 1])),
        ];
        let (first, issued) = a
            .server_certificate(&service.active(), &names, now)
            .unwrap();
        assert!(issued);
        assert!(first.key_pem.contains("PRIVATE KEY"));
        let on_disk = std::fs::read(a.dir().join(SERVER_KEY_FILE)).unwrap();
        assert!(!String::from_utf8_lossy(&on_disk).contains("PRIVATE KEY"));

        let (same, issued) = a
            .server_certificate(&service.active(), &names, now)
            .unwrap();
        assert!(!issued);
        assert_eq!(same.info.fingerprint, first.info.fingerprint);
        assert_eq!(*same.key_pem, *first.key_pem);

        let mut more = names.clone();
        more.push(San::Dns("home.example.org".into()));
        let (renamed, issued) = a.server_certificate(&service.active(), &more, now).unwrap();
        assert!(issued);
        assert_ne!(renamed.info.fingerprint, first.info.fingerprint);

        let later = now + SERVER_VALIDITY - RENEW_BEFORE + Duration::from_secs(3600);
        let (_, issued) = a
            .server_certificate(&service.active(), &more, later)
            .unwrap();
        assert!(issued, "expiring within 30 days");

        service.rotate(now).await.unwrap();
        let (_, issued) = a
            .server_certificate(&service.active(), &more, later)
            .unwrap();
        assert!(issued, "from the new CA");
    }
}
