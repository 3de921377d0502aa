//! `edgefn streams list|describe|put|replay`: a running host's ordered streams, from the command line.

use super::admin_client::AdminArgs;
use super::output::{answer, text};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct StreamsArgs {
    #[command(subcommand)]
    command: StreamsCommand,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Subcommand)]
enum StreamsCommand {
    /// Every stream: its shards, records, bytes and consumers, with how far behind each is.
    List,
    /// One stream, shard by shard, and each consumer's checkpoint and iterator age per shard.
    Describe { stream: String },
    /// Append a record: `edgefn streams put clicks user-17 '{"page": "/"}'` (the body is JSON).
    Put { stream: String, key: String, body: String },
    /// Deliver a consumer's records again from a sequence number, a time, or a while ago:
    /// `edgefn streams replay count --from 1`, `--from 2026-12-06T10:00:00Z`, `--from 15m`.
    Replay {
        /// The consumer function: `function` or `component/function`.
        function: String,
        /// A sequence number (in every shard), an RFC 3339 time, or a duration back from now.
        #[arg(long)]
        from: String,
        /// Only this shard.
        #[arg(long)]
        shard: Option<u32>,
    },
}

/// `--from`: a sequence number, an RFC 3339 time or a duration back from now, as the replay request's fields.
fn replay_from(from: &str) -> anyhow::Result<(Option<u64>, Option<i64>)> {
    if let Ok(sequence) = from.parse::<u64>() {
        return Ok((Some(sequence), None));
    }
    if let Ok(at) = humantime::parse_rfc3339_weak(from) {
        let ms = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        return Ok((None, Some(ms)));
    }
    let back = humantime::parse_duration(from).map_err(|_| {
        anyhow::anyhow!("--from `{from}` is neither a sequence number, an RFC 3339 time nor a duration such as 15m")
    })?;
    let now = crate::storage::now_ms();
    Ok((None, Some(now.saturating_sub(back.as_millis() as i64))))
}

fn print_stream(stream: &Value) {
    println!("{}", text(stream, "name"));
    for shard in stream.get("shards").and_then(Value::as_array).into_iter().flatten() {
        println!(
            "  shard {:>3}  seq {:>10}..{:<10} {:>10} records {:>12} bytes",
            text(shard, "shard"),
            text(shard, "first_seq"),
            text(shard, "last_seq"),
            text(shard, "records"),
            text(shard, "bytes")
        );
    }
    for consumer in stream.get("consumers").and_then(Value::as_array).into_iter().flatten() {
        println!(
            "  consumer {:32} shard {:>3}  checkpoint {:>10}  behind {:>8}  iterator age {} ms",
            text(consumer, "consumer"),
            text(consumer, "shard"),
            text(consumer, "checkpoint"),
            text(consumer, "behind"),
            text(consumer, "iterator_age_ms")
        );
    }
}

pub(crate) fn run(args: StreamsArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    match args.command {
        StreamsCommand::List => {
            let listed = admin.call("GET", "/v1/streams", None)?;
            answer(admin.json, &listed, |listed| {
                for stream in listed.get("streams").and_then(Value::as_array).into_iter().flatten() {
                    print_stream(stream);
                }
            })
        }
        StreamsCommand::Describe { stream } => {
            let described = admin.call("GET", &format!("/v1/streams/{stream}"), None)?;
            answer(admin.json, &described, print_stream)
        }
        StreamsCommand::Put { stream, key, body } => {
            let body = super::admin_client::parse_json("the record body", &body)?;
            let request = json!({ "records": [{ "key": key, "body": body }] });
            let put = admin.call("POST", &format!("/v1/streams/{stream}/records"), Some(request))?;
            answer(admin.json, &put, |put| {
                for position in put.get("positions").and_then(Value::as_array).into_iter().flatten() {
                    println!("stored in shard {} at sequence {}", text(position, "shard"), text(position, "sequence"));
                }
            })
        }
        StreamsCommand::Replay { function, from, shard } => {
            let (from_sequence, from_time_ms) = replay_from(&from)?;
            let request = json!({
                "function": function, "from_sequence": from_sequence, "from_time_ms": from_time_ms, "shard": shard,
            });
            let replayed = admin.call("POST", "/v1/streams/replay", Some(request))?;
            answer(admin.json, &replayed, |replayed| {
                for shard in replayed.get("shards").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "{} on {}: shard {} starts again after sequence {}",
                        text(replayed, "consumer"),
                        text(replayed, "stream"),
                        text(shard, "shard"),
                        text(shard, "checkpoint")
                    );
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_reads_a_sequence_a_time_or_a_while_ago_and_names_what_it_is_not() {
        assert_eq!(replay_from("42").unwrap(), (Some(42), None));
        assert_eq!(replay_from("2026-12-06T10:00:00Z").unwrap(), (None, Some(1_796_551_200_000)));
        let (_, Some(ago)) = replay_from("15m").unwrap() else { panic!("a time") };
        assert!((crate::storage::now_ms() - ago - 900_000).abs() < 5_000);
        assert!(replay_from("soon").unwrap_err().to_string().contains("--from `soon`"));
    }
}
