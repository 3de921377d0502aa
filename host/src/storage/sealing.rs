//! Secrets sealed at rest: a deploy's secret values are stored encrypted (XChaCha20-Poly1305, an authenticated
//! cipher) under a host key kept outside the database, so a copied data directory or a backup of `edgefn.db` (or of
//! the cluster's JetStream store) yields no secret without the key.
//!
//! The key is `EDGEFN_SECRETS_KEY` from the environment (every node of a cluster must have the same one), or else
//! `<data>/secrets.key` (mode 0600, created at first start). A sealed value is `sealed:v1:<key id>:<base64 of nonce
//! and ciphertext>`; the key id names which key sealed it, so a value sealed under another key is refused naming
//! both, never decrypted to garbage.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// The file that holds the host key, in the data directory.
pub const KEY_FILE: &str = "secrets.key";
/// The environment variable that holds the host key instead (a cluster's shared key).
pub const KEY_ENV: &str = "EDGEFN_SECRETS_KEY";
const PREFIX: &str = "sealed:v1:";

/// The host key that seals and unseals secrets. See the module docs.
#[derive(Clone)]
pub struct SecretsKey {
    cipher: XChaCha20Poly1305,
    /// Which key this is: 8 hex digits of a hash of it, safe to show.
    id: String,
    /// Where it came from, for errors.
    source: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKey").field("id", &self.id).field("source", &self.source).finish_non_exhaustive()
    }
}

impl SecretsKey {
    /// The key from `EDGEFN_SECRETS_KEY`, or `<data_dir>/secrets.key` (created when missing).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, super::StorageError> {
        if let Ok(text) = std::env::var(KEY_ENV)
            && !text.trim().is_empty()
        {
            return Ok(Self::from_text(text.trim(), KEY_ENV.to_owned()));
        }
        let path = key_path(data_dir);
        let (text, _created) = super::load_or_create_secret(&path)?;
        Ok(Self::from_text(&text, path.display().to_string()))
    }

    /// A key from its text (any length: it is hashed to the cipher's 32 bytes).
    pub fn from_text(text: &str, source: String) -> Self {
        let key: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let id = hex::encode(&Sha256::digest([b"edgefn secrets key id:".as_slice(), &key].concat())[..4]);
        Self { cipher: XChaCha20Poly1305::new(&key.into()), id, source }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `plaintext`, sealed under this key with a fresh random nonce.
    pub fn seal(&self, plaintext: &str) -> String {
        let random = [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat();
        let nonce = XNonce::from_slice(&random[..24]);
        let sealed = self
            .cipher
            .encrypt(nonce, plaintext.as_bytes())
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 encrypts any length that fits in memory"));
        format!("{PREFIX}{}:{}", self.id, STANDARD_NO_PAD.encode([&random[..24], &sealed].concat()))
    }

    /// The plaintext of a value [`seal`](Self::seal) made; an error names the key and why (another key sealed
    /// it, or it was altered).
    pub fn unseal(&self, sealed: &str) -> Result<String, String> {
        let rest = sealed.strip_prefix(PREFIX).ok_or("it is not a sealed value")?;
        let (id, data) = rest.split_once(':').ok_or("its sealed form is malformed")?;
        if id != self.id {
            return Err(format!(
                "it was sealed under key {id}, and this host's key is {} (from {}): start the host with the key that \
                 sealed it ({KEY_ENV}, or the data directory's {KEY_FILE})",
                self.id, self.source
            ));
        }
        let data = STANDARD_NO_PAD.decode(data).map_err(|_| "its sealed form is malformed".to_owned())?;
        if data.len() < 24 {
            return Err("its sealed form is malformed".to_owned());
        }
        let (nonce, ciphertext) = data.split_at(24);
        let plain = self.cipher.decrypt(XNonce::from_slice(nonce), ciphertext).map_err(|_| {
            format!("it does not open with key {} (altered, or a different key with the same id)", self.id)
        })?;
        String::from_utf8(plain).map_err(|_| "it is not UTF-8 once opened".to_owned())
    }

    /// Whether `value` is a sealed value.
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }
}

/// Where the key file of `data_dir` is.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_only_unaltered() {
        let key = SecretsKey::from_text("a host key", "test".into());
        let sealed = key.seal("hunter2");
        assert!(SecretsKey::is_sealed(&sealed) && !sealed.contains("hunter2"), "{sealed}");
        assert_ne!(sealed, key.seal("hunter2"), "a fresh nonce each time");
        assert_eq!(key.unseal(&sealed).as_deref(), Ok("hunter2"));

        let other = SecretsKey::from_text("another key", "test".into());
        let refused = other.unseal(&sealed).unwrap_err();
        assert!(refused.contains(key.id()) && refused.contains(other.id()), "{refused}");

        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let refused = key.unseal(&String::from_utf8(altered).unwrap()).unwrap_err();
        assert!(refused.contains("does not open"), "{refused}");
        assert!(key.unseal("hunter2").is_err(), "a clear value is not taken for a sealed one");
    }

    #[test]
    fn the_key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let first = SecretsKey::load_or_create(dir.path()).expect("created");
        let again = SecretsKey::load_or_create(dir.path()).expect("loaded");
        assert_eq!(first.id(), again.id());
        let mode = std::fs::metadata(key_path(dir.path())).expect("the key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
