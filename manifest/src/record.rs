//! Manifest records: one per `#[function]`, concatenated in the `edgefn-manifest` custom section.
//!
//! The linker concatenates the section contents of every static that names the section, in no fixed order, so each
//! record must stand on its own:
//!
//! ```text
//! b"EFN" | version: u8 | payload length: u32 little-endian | payload: UTF-8 JSON of FunctionRecord
//! ```
//!
//! The version byte lets a newer host refuse (or translate) records written by an SDK it does not know; the JSON
//! payload lets new trigger kinds and keys arrive without a new framing.

use serde::{Deserialize, Serialize};

/// Leading bytes of every record; a section that does not start with them is not ours (or is corrupt).
pub const MAGIC: &[u8; 3] = b"EFN";
/// The record format this crate writes and reads.
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 4;

/// One function of a component: its exported name and what triggers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// The Rust function's name, unique within a component.
    pub name: String,
    /// What makes the host invoke it.
    pub trigger: Trigger,
}

/// The trigger kinds a function can declare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trigger {
    /// An HTTP route, e.g. `/hello/{name}`, and the method it answers (`*` for any).
    Http { route: String, method: String },
    /// `#[edgefn::init]`: runs once at deploy, and the memory it leaves becomes every instance's starting state.
    Init,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Http { route, method } => write!(f, "http {method} {route}"),
            Trigger::Init => f.write_str("init (runs once at deploy; instances start from its snapshot)"),
        }
    }
}

/// Why a custom section could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The bytes at `offset` do not start with the `EFN` magic.
    BadMagic { offset: usize },
    /// The record at `offset` was written by a newer (or unknown) SDK.
    UnsupportedVersion { offset: usize, version: u8 },
    /// The section ends in the middle of the record at `offset`.
    Truncated { offset: usize },
    /// The record at `offset` holds a payload this version cannot read.
    BadPayload { offset: usize, reason: String },
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestError::BadMagic { offset } => {
                write!(f, "manifest record at byte {offset} does not start with `EFN`")
            }
            ManifestError::UnsupportedVersion { offset, version } => write!(
                f,
                "manifest record at byte {offset} has version {version}, this host reads version {VERSION}; \
                 rebuild the function with a matching edgefn SDK or upgrade the host"
            ),
            ManifestError::Truncated { offset } => {
                write!(f, "manifest record at byte {offset} is truncated")
            }
            ManifestError::BadPayload { offset, reason } => {
                write!(f, "manifest record at byte {offset} is invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// Encodes one record, ready to be placed in the custom section.
pub fn encode_record(record: &FunctionRecord) -> Vec<u8> {
    let payload = serde_json::to_vec(record).expect("a FunctionRecord always serializes");
    let len = u32::try_from(payload.len()).expect("a manifest record is far below 4 GiB");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes every record of a (possibly concatenated) section, in section order.
pub fn decode_section(mut bytes: &[u8]) -> Result<Vec<FunctionRecord>, ManifestError> {
    let mut records = Vec::new();
    let mut offset = 0;
    while !bytes.is_empty() {
        if bytes.len() < HEADER_LEN {
            return Err(ManifestError::Truncated { offset });
        }
        if &bytes[..3] != MAGIC {
            return Err(ManifestError::BadMagic { offset });
        }
        let version = bytes[3];
        if version != VERSION {
            return Err(ManifestError::UnsupportedVersion { offset, version });
        }
        let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let Some(payload) = bytes.get(HEADER_LEN..HEADER_LEN + len) else {
            return Err(ManifestError::Truncated { offset });
        };
        let record =
            serde_json::from_slice(payload).map_err(|e| ManifestError::BadPayload { offset, reason: e.to_string() })?;
        records.push(record);
        bytes = &bytes[HEADER_LEN + len..];
        offset += HEADER_LEN + len;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(name: &str, route: &str) -> FunctionRecord {
        FunctionRecord { name: name.into(), trigger: Trigger::Http { route: route.into(), method: "GET".into() } }
    }

    #[test]
    fn concatenated_records_decode_in_order() {
        let a = http("a", "/a");
        let b = http("b", "/b/{id}");
        let mut section = encode_record(&b);
        section.extend(encode_record(&a));
        assert_eq!(decode_section(&section).unwrap(), vec![b, a]);
    }

    #[test]
    fn empty_section_has_no_records() {
        assert_eq!(decode_section(&[]).unwrap(), vec![]);
    }

    #[test]
    fn truncated_record_is_reported_with_its_offset() {
        let mut section = encode_record(&http("a", "/a"));
        let first_len = section.len();
        section.extend(encode_record(&http("b", "/b")));
        section.pop();
        assert_eq!(decode_section(&section), Err(ManifestError::Truncated { offset: first_len }));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut section = encode_record(&http("a", "/a"));
        section[3] = 9;
        assert_eq!(decode_section(&section), Err(ManifestError::UnsupportedVersion { offset: 0, version: 9 }));
    }

    #[test]
    fn foreign_bytes_are_refused() {
        assert_eq!(decode_section(b"hello world!"), Err(ManifestError::BadMagic { offset: 0 }));
    }

    #[test]
    fn bad_payload_is_refused() {
        let mut section = b"EFN\x01".to_vec();
        section.extend(2u32.to_le_bytes());
        section.extend(b"{}");
        assert!(matches!(decode_section(&section), Err(ManifestError::BadPayload { offset: 0, .. })));
    }
}
