//! Signed object URLs: `/_edgefn/objects/<bucket>/<key>?op=put&expires=..&max=..&type=..&sig=..`, an HMAC-SHA256
//! under the host's URL-signing key over everything the holder may do (the operation, bucket, key, expiry, size
//! bound and content type), so changing any of them, or using the URL past its expiry, is refused.
//!
//! The key is `EDGEFN_URL_SIGNING_KEY` from the environment (every node of a cluster must share it to accept each
//! other's URLs), or else `<data>/url-signing.key` (mode 0600, created at first start). It is a key of its own, not
//! the secrets key: rotating the secrets key re-seals secrets and need not void every URL handed out, and a leak of
//! one does not give the other.

use edgefn_manifest::route::percent_encode;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use std::path::Path;

/// The path every signed URL starts with; functions cannot have routes under it.
pub const PATH_PREFIX: &str = "/_edgefn/objects/";
/// The file that holds the key, in the data directory.
pub const KEY_FILE: &str = "url-signing.key";
/// The environment variable that holds the key instead.
pub const KEY_ENV: &str = "EDGEFN_URL_SIGNING_KEY";

/// What a signed URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `put` or `get`.
    pub op: String,
    pub bucket: String,
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub expires: i64,
    /// For `put`: the most bytes; 0 for `get`.
    pub max_bytes: u64,
    /// For `put`: the content type the upload must have (empty: any).
    pub content_type: String,
}

/// Why a signed URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the URL has no `{0}`: it is not a signed URL")]
    Missing(&'static str),
    #[error("the URL's signature does not match what it allows: it was altered, or signed by another host")]
    Mismatch,
    #[error("the URL expired {0} ms ago")]
    Expired(i64),
    #[error("the URL allows `{allowed}`, not `{used}`")]
    WrongOperation { allowed: String, used: String },
}

/// Signs and checks object URLs.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner").finish_non_exhaustive()
    }
}

impl UrlSigner {
    /// The key from `EDGEFN_URL_SIGNING_KEY`, or `<data_dir>/url-signing.key` (created when missing).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, crate::storage::StorageError> {
        if let Ok(text) = std::env::var(KEY_ENV)
            && !text.trim().is_empty()
        {
            return Ok(Self::from_text(text.trim()));
        }
        let (text, _created) = crate::storage::load_or_create_secret(&data_dir.join(KEY_FILE))?;
        Ok(Self::from_text(&text))
    }

    pub fn from_text(text: &str) -> Self {
        use sha2::Digest as _;
        Self { key: Sha256::digest([b"edgefn url signing:".as_slice(), text.as_bytes()].concat()).into() }
    }

    fn mac(&self, grant: &Grant) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        // Length-prefixed fields: no two grants give the same input.
        for field in [grant.op.as_str(), &grant.bucket, &grant.key, &grant.content_type] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac.update(&grant.expires.to_be_bytes());
        mac.update(&grant.max_bytes.to_be_bytes());
        mac
    }

    /// The URL (path and query) that allows `grant`.
    pub fn sign(&self, grant: &Grant) -> String {
        let signature = hex::encode(self.mac(grant).finalize().into_bytes());
        let mut url = format!(
            "{PATH_PREFIX}{}/{}?op={}&expires={}",
            grant.bucket,
            percent_encode(&grant.key, true),
            grant.op,
            grant.expires
        );
        if grant.op == "put" {
            url.push_str(&format!("&max={}&type={}", grant.max_bytes, percent_encode(&grant.content_type, false)));
        }
        url.push_str(&format!("&sig={signature}"));
        url
    }

    /// Checks the query of a URL for `bucket`/`key` used as `used` (`put` or `get`) at `now`; returns what it
    /// allows.
    pub fn verify(
        &self,
        bucket: &str,
        key: &str,
        query: &std::collections::HashMap<String, String>,
        used: &str,
        now: i64,
    ) -> Result<Grant, SignatureError> {
        let field = |name: &'static str| query.get(name).ok_or(SignatureError::Missing(name));
        let signature = hex::decode(field("sig")?).map_err(|_| SignatureError::Mismatch)?;
        let op = field("op")?.clone();
        let expires = field("expires")?.parse().map_err(|_| SignatureError::Mismatch)?;
        let (max_bytes, content_type) = if op == "put" {
            (field("max")?.parse().map_err(|_| SignatureError::Mismatch)?, field("type")?.clone())
        } else {
            (0, String::new())
        };
        let grant = Grant { op, bucket: bucket.to_owned(), key: key.to_owned(), expires, max_bytes, content_type };
        self.mac(&grant).verify_slice(&signature).map_err(|_| SignatureError::Mismatch)?;
        if grant.expires <= now {
            return Err(SignatureError::Expired(now - grant.expires));
        }
        // `get` URLs serve `HEAD` too.
        if grant.op != used {
            return Err(SignatureError::WrongOperation { allowed: grant.op, used: used.to_owned() });
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn query(url: &str) -> (String, HashMap<String, String>) {
        let (path, query) = url.split_once('?').expect("a query");
        let query = query
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').expect("name=value");
                (name.to_owned(), value.replace("%2F", "/"))
            })
            .collect();
        (path.to_owned(), query)
    }

    fn grant() -> Grant {
        Grant {
            op: "put".into(),
            bucket: "photos".into(),
            key: "uploads/a b.png".into(),
            expires: 2_000,
            max_bytes: 100,
            content_type: "image/png".into(),
        }
    }

    #[test]
    fn a_signed_url_verifies_and_any_change_to_what_it_allows_is_refused() {
        let signer = UrlSigner::from_text("k");
        let url = signer.sign(&grant());
        let (path, q) = query(&url);
        assert_eq!(path, "/_edgefn/objects/photos/uploads/a%20b.png");
        assert_eq!(signer.verify("photos", "uploads/a b.png", &q, "put", 1_000), Ok(grant()));
        assert_eq!(signer.verify("photos", "uploads/other.png", &q, "put", 1_000), Err(SignatureError::Mismatch));
        assert_eq!(signer.verify("other", "uploads/a b.png", &q, "put", 1_000), Err(SignatureError::Mismatch));
        for (name, value) in [("max", "1000"), ("type", "text/html"), ("expires", "9999"), ("op", "get")] {
            let mut tampered = q.clone();
            tampered.insert(name.into(), value.into());
            assert_eq!(
                signer.verify("photos", "uploads/a b.png", &tampered, "put", 1_000),
                Err(SignatureError::Mismatch),
                "{name}"
            );
        }
        assert_eq!(signer.verify("photos", "uploads/a b.png", &q, "put", 2_500), Err(SignatureError::Expired(500)));
        assert!(matches!(
            signer.verify("photos", "uploads/a b.png", &q, "get", 1_000),
            Err(SignatureError::WrongOperation { .. })
        ));
        assert_eq!(
            UrlSigner::from_text("another").verify("photos", "uploads/a b.png", &q, "put", 1_000),
            Err(SignatureError::Mismatch)
        );
    }
}
