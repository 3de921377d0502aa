//! A test guest for object storage: `obj`, an invoke function, runs the operation its JSON payload names; and
//! `on_upload`, an object trigger on bucket `photos` (keys under `uploads/`, created only), records every change it
//! sees in key-value store `seen` and fails on keys containing `fail` (to be retried, then dead-lettered).

use edgefn::kv::Store;
use edgefn::objects::{Bucket, ObjectEvent, ObjectInfo};
use edgefn::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Put {
        bucket: String,
        key: String,
        text: String,
        content_type: String,
    },
    /// Streams `mib` MiB of a repeating pattern (byte `i` is `i % 251`), 1 MiB per write: the guest never holds it.
    PutPattern {
        bucket: String,
        key: String,
        mib: u64,
    },
    /// Starts an upload, writes to it, and drops it unfinished.
    Abandon {
        bucket: String,
        key: String,
    },
    Get {
        bucket: String,
        key: String,
    },
    /// Reads the object in pieces and checks it is the pattern `PutPattern` wrote; answers its size.
    CheckPattern {
        bucket: String,
        key: String,
    },
    Range {
        bucket: String,
        key: String,
        offset: u64,
        length: u64,
    },
    Head {
        bucket: String,
        key: String,
    },
    List {
        bucket: String,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    },
    Delete {
        bucket: String,
        key: String,
    },
    Copy {
        bucket: String,
        key: String,
        to_bucket: String,
        to_key: String,
    },
    SignUpload {
        bucket: String,
        key: String,
        expires_ms: u64,
        max_bytes: u64,
        content_type: String,
    },
    SignDownload {
        bucket: String,
        key: String,
        expires_ms: u64,
    },
    /// Tries to send a message to `queue` (an object trigger's own, to forge a change); answers the refusal.
    Forge {
        queue: String,
    },
}

fn info(info: &ObjectInfo) -> Value {
    json!({ "key": info.key, "size": info.size, "etag": info.etag, "content_type": info.content_type })
}

fn pattern(offset: u64, length: usize) -> Vec<u8> {
    (0..length as u64).map(|i| ((offset + i) % 251) as u8).collect()
}

#[function(trigger = invoke)]
fn obj(op: Op) -> Result<Value> {
    Ok(match op {
        Op::Put { bucket, key, text, content_type } => {
            info(&Bucket::open(&bucket).put(&key, text.as_bytes(), &content_type)?)
        }
        // ANCHOR: writer
        Op::PutPattern { bucket, key, mib } => {
            let mut writer = Bucket::open(&bucket).writer(&key, "application/octet-stream", &[("source", "probe")])?;
            for piece in 0..mib {
                writer.write(&pattern(piece << 20, 1 << 20))?;
            }
            info(&writer.finish()?)
        }
        // ANCHOR_END: writer
        Op::Abandon { bucket, key } => {
            let mut writer = Bucket::open(&bucket).writer(&key, "", &[])?;
            writer.write(b"never stored")?;
            drop(writer);
            json!({ "abandoned": key })
        }
        Op::Get { bucket, key } => match Bucket::open(&bucket).get(&key)? {
            Some((found, bytes)) => json!({ "info": info(&found), "text": String::from_utf8_lossy(&bytes) }),
            None => Value::Null,
        },
        Op::CheckPattern { bucket, key } => {
            let bucket = Bucket::open(&bucket);
            let Some(head) = bucket.head(&key)? else { return Err(Error::not_found(format!("no {key}"))) };
            let mut offset = 0;
            while offset < head.size {
                let (_, bytes) =
                    bucket.read_range(&key, offset, 4 << 20)?.ok_or_else(|| Error::internal("vanished"))?;
                if bytes != pattern(offset, bytes.len()) {
                    return Err(Error::internal(format!("bytes at {offset} differ from the pattern")));
                }
                offset += bytes.len() as u64;
            }
            json!({ "size": offset, "etag": head.etag })
        }
        Op::Range { bucket, key, offset, length } => match Bucket::open(&bucket).read_range(&key, offset, length)? {
            Some((_, bytes)) => json!({ "text": String::from_utf8_lossy(&bytes) }),
            None => Value::Null,
        },
        Op::Head { bucket, key } => Bucket::open(&bucket).head(&key)?.map_or(Value::Null, |found| info(&found)),
        Op::List { bucket, prefix, cursor, limit } => {
            let page = Bucket::open(&bucket).list(&prefix, cursor.as_deref(), limit)?;
            let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
            json!({ "keys": keys, "cursor": page.cursor })
        }
        Op::Delete { bucket, key } => json!({ "deleted": Bucket::open(&bucket).delete(&key)? }),
        Op::Copy { bucket, key, to_bucket, to_key } => {
            info(&Bucket::open(&bucket).copy(&key, &Bucket::open(&to_bucket), &to_key)?)
        }
        // ANCHOR: sign
        Op::SignUpload { bucket, key, expires_ms, max_bytes, content_type } => {
            let url =
                Bucket::open(&bucket).sign_upload(&key, Duration::from_millis(expires_ms), max_bytes, &content_type)?;
            json!({ "url": url })
        }
        Op::SignDownload { bucket, key, expires_ms } => {
            json!({ "url": Bucket::open(&bucket).sign_download(&key, Duration::from_millis(expires_ms))? })
        }
        // ANCHOR_END: sign
        Op::Forge { queue } => match edgefn::queue::send(&queue, &json!({"event": "created", "key": "uploads/forged"}))
        {
            Ok(id) => json!({ "sent": id }),
            Err(error) => json!({ "refused": error.message() }),
        },
    })
}

// ANCHOR: trigger
#[function(trigger = object("photos", events = ["created"], prefix = "uploads/", batch_size = 1, max_retries = 2, backoff_ms = 50))]
fn on_upload(batch: Batch<ObjectEvent>) -> Result<()> {
    let seen = Store::open("seen")?;
    for message in &batch {
        let event = message.body();
        seen.increment(&format!("runs:{}", event.key), 1)?;
        seen.set_json(
            &format!("last:{}", event.key),
            &json!({ "etag": event.etag, "size": event.size, "event": event.event, "correlation_id": event.correlation_id }),
        )?;
        if event.key.contains("fail") {
            return Err(Error::internal(format!("refusing {}", event.key)));
        }
    }
    Ok(())
}
// ANCHOR_END: trigger
