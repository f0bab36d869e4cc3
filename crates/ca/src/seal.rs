//! Sealing secrets at rest: ChaCha20-Poly1305 under a 256-bit master key kept in its own file.
//!
//! A sealed blob is `MAGIC ‖ nonce (12 bytes, random) ‖ ciphertext ‖ tag (16 bytes)`. The
//! caller's associated data binds the blob to what it belongs to (for the CA key: the CA
//! certificate's fingerprint). The blob starts with a text magic, not with anything a PEM or
//! DER parser accepts.

use std::io::{Read, Write};
use std::path::Path;

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"PLSEAL1\n";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the master key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the master key file {0} is not 32 bytes: damaged or not ours")]
    BadKeyFile(String),
    #[error("not a sealed blob (wrong header or too short)")]
    NotSealed,
    #[error(
        "the sealed data does not open with this master key (wrong key, altered, or sealed for something else)"
    )]
    WrongKey,
    #[error("the system's random generator failed")]
    Random,
}

/// The key that seals secrets at rest. Zeroized when dropped; never printed.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// A new random key (kept in memory only).
    pub fn generate() -> Result<MasterKey, SealError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| SealError::Random)?;
        Ok(MasterKey(key))
    }

    /// Reads the key at `path`, or creates it there (mode 0600 from the start, synced) if
    /// there is no file. Answers the key and whether it was created. An existing file whose
    /// mode lets anyone else read it is narrowed to 0600.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool), SealError> {
        let io = |source| SealError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::File::open(path) {
            Ok(mut file) => {
                restrict(path).map_err(io)?;
                let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
                Read::by_ref(&mut file)
                    .take(KEY_LEN as u64 + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io)?;
                let key: [u8; KEY_LEN] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SealError::BadKeyFile(path.display().to_string()))?;
                Ok((MasterKey(Zeroizing::new(key)), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate()?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(io)?;
                file.write_all(key.0.as_ref()).map_err(io)?;
                file.sync_all().map_err(io)?;
                if let Some(dir) = path.parent()
                    && let Ok(dir) = std::fs::File::open(dir)
                {
                    // Best effort: some platforms cannot sync a directory.
                    let _ = dir.sync_all();
                }
                Ok((key, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn aead(&self) -> Result<LessSafeKey, SealError> {
        let key =
            UnboundKey::new(&CHACHA20_POLY1305, self.0.as_ref()).map_err(|_| SealError::Random)?;
        Ok(LessSafeKey::new(key))
    }

    /// Seals `secret` bound to `context` (associated data, not secret).
    pub fn seal(&self, secret: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut sealed = Vec::with_capacity(MAGIC.len() + NONCE_LEN + secret.len() + TAG_LEN);
        sealed.extend_from_slice(MAGIC);
        sealed.extend_from_slice(&nonce);
        let mut body = secret.to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut body,
            )
            .map_err(|_| SealError::Random)?;
        sealed.extend_from_slice(&body);
        body.iter_mut().for_each(|b| *b = 0);
        Ok(sealed)
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(SealError::NotSealed)?;
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::NotSealed);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::NotSealed)?;
        let mut body = Zeroizing::new(body.to_vec());
        let len = self
            .aead()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                body.as_mut_slice(),
            )
            .map_err(|_| SealError::WrongKey)?
            .len();
        body.truncate(len);
        Ok(body)
    }
}

/// Narrows `path` to mode 0600 (owner read/write) where file modes exist.
fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode != 0o600 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"the CA key", b"fingerprint-1").unwrap();
        assert!(sealed.starts_with(MAGIC));
        assert!(!sealed.windows(10).any(|w| w == b"the CA key"));
        assert_eq!(
            key.open(&sealed, b"fingerprint-1").unwrap().as_slice(),
            b"the CA key"
        );
        assert!(matches!(
            key.open(&sealed, b"fingerprint-2"),
            Err(SealError::WrongKey)
        ));
        let other = MasterKey::generate().unwrap();
        assert!(matches!(
            other.open(&sealed, b"fingerprint-1"),
            Err(SealError::WrongKey)
        ));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(matches!(
            key.open(&altered, b"fingerprint-1"),
            Err(SealError::WrongKey)
        ));
        assert!(matches!(
            key.open(b"-----BEGIN PRIVATE KEY-----", b""),
            Err(SealError::NotSealed)
        ));
        assert!(matches!(
            key.open(&sealed[..20], b"fingerprint-1"),
            Err(SealError::NotSealed)
        ));
        // A fresh nonce each time.
        assert_ne!(sealed, key.seal(b"the CA key", b"fingerprint-1").unwrap());
    }

    #[test]
    fn the_master_key_file_is_created_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (key, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let sealed = key.seal(b"secret", b"ctx").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let (again, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.open(&sealed, b"ctx").unwrap().as_slice(), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "narrowed back");
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(SealError::BadKeyFile(_))
        ));
    }
}
