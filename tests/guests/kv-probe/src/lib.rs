//! A test guest that drives the key-value store: one `invoke` function, `kv`, runs the operation its JSON payload
//! names. Invoke functions are addressed as `component/kv`, so the same component deployed under two names (with
//! different stores granted) can be called side by side, as the isolation test does.

use edgefn::kv::{Store, Version};
use edgefn::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Get {
        store: String,
        key: String,
    },
    Set {
        store: String,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    },
    Delete {
        store: String,
        key: String,
    },
    Exists {
        store: String,
        key: String,
    },
    Incr {
        store: String,
        key: String,
        delta: i64,
    },
    /// Appends `item` to the JSON list at `key` with a compare-and-swap loop; answers how many tries it took.
    CasAppend {
        store: String,
        key: String,
        item: String,
    },
    List {
        store: String,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    },
    /// Writes `count` keys `prefix0..` of `value_bytes` each; stops at the first refusal and says why.
    Fill {
        store: String,
        prefix: String,
        count: u32,
        value_bytes: usize,
    },
    /// Times `ops` sets then `ops` gets of `value_bytes` each, from inside the guest.
    Bench {
        store: String,
        ops: u32,
        value_bytes: usize,
    },
}

#[function(trigger = invoke)]
fn kv(op: Op) -> Result<Value> {
    match op {
        Op::Get { store, key } => {
            let value = Store::open(&store)?.get(&key)?;
            Ok(json!({ "value": value.map(|v| String::from_utf8_lossy(&v).into_owned()) }))
        }
        Op::Set { store, key, value, ttl_ms } => {
            let store = Store::open(&store)?;
            match ttl_ms {
                Some(ms) => store.set_with_ttl(&key, value, Duration::from_millis(ms))?,
                None => store.set(&key, value)?,
            }
            Ok(json!({ "ok": true }))
        }
        Op::Delete { store, key } => {
            Store::open(&store)?.delete(&key)?;
            Ok(json!({ "ok": true }))
        }
        Op::Exists { store, key } => Ok(json!({ "exists": Store::open(&store)?.exists(&key)? })),
        Op::Incr { store, key, delta } => Ok(json!({ "value": Store::open(&store)?.add(&key, delta)? })),
        Op::CasAppend { store, key, item } => {
            let store = Store::open(&store)?;
            for attempt in 1.. {
                let (mut items, version): (Vec<String>, Option<Version>) = match store.get_versioned(&key)? {
                    Some((bytes, version)) => {
                        (serde_json::from_slice(&bytes).map_err(|e| Error::internal(e.to_string()))?, Some(version))
                    }
                    None => (Vec::new(), None),
                };
                items.push(item.clone());
                let encoded = serde_json::to_vec(&items).map_err(|e| Error::internal(e.to_string()))?;
                if store.compare_and_swap(&key, version, encoded)?.is_some() {
                    return Ok(json!({ "attempts": attempt }));
                }
            }
            unreachable!("the loop only ends by returning")
        }
        Op::List { store, prefix, cursor, limit } => {
            let page = Store::open(&store)?.list(&prefix, cursor.as_deref(), limit)?;
            Ok(json!({ "keys": page.keys, "cursor": page.cursor }))
        }
        Op::Fill { store, prefix, count, value_bytes } => {
            let store = Store::open(&store)?;
            let value = vec![b'x'; value_bytes];
            for n in 0..count {
                if let Err(error) = store.set(&format!("{prefix}{n}"), &value) {
                    return Ok(json!({ "written": n, "error": error.message() }));
                }
            }
            Ok(json!({ "written": count, "error": null }))
        }
        Op::Bench { store, ops, value_bytes } => {
            let store = Store::open(&store)?;
            let value = vec![b'v'; value_bytes];
            let mut set_us = Vec::with_capacity(ops as usize);
            let started = Instant::now();
            for n in 0..ops {
                let op = Instant::now();
                store.set(&format!("bench:{n}"), &value)?;
                set_us.push(op.elapsed().as_secs_f64() * 1e6);
            }
            let set_s = started.elapsed().as_secs_f64();
            let mut get_us = Vec::with_capacity(ops as usize);
            let started = Instant::now();
            for n in 0..ops {
                let op = Instant::now();
                store.get(&format!("bench:{n}"))?.ok_or_else(|| Error::internal("a benchmark key vanished"))?;
                get_us.push(op.elapsed().as_secs_f64() * 1e6);
            }
            let get_s = started.elapsed().as_secs_f64();
            Ok(json!({
                "set_ops_per_s": f64::from(ops) / set_s,
                "get_ops_per_s": f64::from(ops) / get_s,
                "set_p50_us": percentile(&mut set_us, 0.50),
                "set_p99_us": percentile(&mut set_us, 0.99),
                "get_p50_us": percentile(&mut get_us, 0.50),
                "get_p99_us": percentile(&mut get_us, 0.99),
            }))
        }
    }
}

fn percentile(samples: &mut [f64], quantile: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
    samples.get(index).copied().unwrap_or(0.0)
}
