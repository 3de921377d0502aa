//! Streams on a real SQLite file: per-key order and shards, checkpoints and replays with their epochs, retention by
//! bytes and by age.

use super::*;

fn settings(shards: u32) -> StreamSettings {
    StreamSettings { shards, retention_ms: 24 * 3_600_000, max_bytes: 1 << 20 }
}

fn store(dir: &std::path::Path, default: StreamSettings) -> StreamDb {
    let db = Database::open(dir).expect("open");
    let readers = Database::connect(dir).expect("connect");
    let named = BTreeMap::from([("tiny".to_owned(), StreamSettings { shards: 1, max_bytes: 100, ..default })]);
    StreamDb::new(db, readers, StreamCatalog { default, named, max_record_bytes: 1 << 16 })
}

fn records(keys: &[&str]) -> Vec<(String, Vec<u8>)> {
    keys.iter().enumerate().map(|(i, key)| ((*key).to_owned(), format!("{key}-{i}").into_bytes())).collect()
}

#[test]
fn a_key_always_maps_to_the_same_shard_by_a_fixed_hash() {
    // FNV-1a's published test vectors: records already stored depend on the hash, so it must never change.
    assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    assert_eq!([shard_of("a", 4), shard_of("b", 4)], [0, 1]);
    assert_eq!(shard_of("anything", 1), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn records_keep_put_order_per_shard_with_sequences_that_never_repeat() {
    let dir = tempfile::tempdir().expect("dir");
    let streams = store(dir.path(), settings(4));
    let keys: Vec<String> = (0..40).map(|i| format!("k{}", i % 8)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let positions = streams.put("clicks", records(&keys), Some("c1".into())).await.expect("put").expect("valid");
    assert_eq!(positions.len(), 40);
    for (position, key) in positions.iter().zip(&keys) {
        assert_eq!(position.shard, shard_of(key, 4), "{key}");
    }
    for shard in 0..4 {
        let (checkpoint, read) = streams
            .read_from_checkpoint("clicks", "c/f", shard, StreamStart::Oldest, 1000, 1 << 20)
            .await
            .expect("read");
        assert_eq!(checkpoint, Checkpoint { seq: 0, epoch: 0 });
        let expected: Vec<u64> = (1..=read.len() as u64).collect();
        assert_eq!(read.iter().map(|r| r.seq).collect::<Vec<_>>(), expected, "dense sequences in shard {shard}");
        // Within a shard, each key's records are in put order.
        let mut last_index: BTreeMap<&str, usize> = BTreeMap::new();
        for record in &read {
            let index: usize = std::str::from_utf8(&record.body).unwrap().rsplit('-').next().unwrap().parse().unwrap();
            assert!(last_index.insert(&record.key, index).is_none_or(|before| before < index));
            assert_eq!(record.correlation_id.as_deref(), Some("c1"));
        }
    }
    let described = streams.describe(Some("clicks")).await.expect("describe");
    assert_eq!(described[0].shards.iter().map(|s| s.records).sum::<u64>(), 40);
    // A bad key or an oversize record stores nothing.
    let refused = streams.put("clicks", vec![(String::new(), b"x".to_vec())], None).await.expect("db");
    assert!(refused.unwrap_err().to_string().contains("partition key"));
    let big = vec![("k".to_owned(), vec![0u8; 1 << 17])];
    assert!(matches!(streams.put("clicks", big, None).await.expect("db"), Err(StreamRefusal::TooLarge { .. })));
    assert_eq!(
        streams.describe(Some("clicks")).await.expect("describe")[0].shards.iter().map(|s| s.records).sum::<u64>(),
        40
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn checkpoints_start_where_asked_and_a_replay_wins_over_a_delivery_that_ran_across_it() {
    let dir = tempfile::tempdir().expect("dir");
    let streams = store(dir.path(), settings(1));
    streams.put("s", records(&["a", "a", "a"]), None).await.expect("put").expect("valid");
    let (latest, unread) =
        streams.read_from_checkpoint("s", "late/f", 0, StreamStart::Latest, 10, 1 << 20).await.expect("read");
    assert_eq!((latest.seq, unread.len()), (3, 0), "a new consumer starting at the latest skips what is there");
    let (oldest, read) =
        streams.read_from_checkpoint("s", "early/f", 0, StreamStart::Oldest, 2, 1 << 20).await.expect("read");
    assert_eq!((oldest.seq, read.len()), (0, 2), "batch size bounds the read");
    let to = Checkpoint { seq: 2, epoch: oldest.epoch };
    assert!(streams.advance_and_read("s", "early/f", 0, to, 10, 1 << 20).await.expect("advance").is_some());
    // A replay from sequence 1 moves it back and bumps the epoch: the advance of a delivery read before it fails.
    let moved = streams.replay("s", "early/f", None, ReplayFrom::Sequence(1)).await.expect("replay");
    assert_eq!(moved, [(0, 0)]);
    let stale = Checkpoint { seq: 3, epoch: oldest.epoch };
    assert!(
        streams.advance_and_read("s", "early/f", 0, stale, 10, 1 << 20).await.expect("advance").is_none(),
        "stale epoch"
    );
    let (after, read) =
        streams.read_from_checkpoint("s", "early/f", 0, StreamStart::Oldest, 10, 1 << 20).await.expect("read");
    assert_eq!((after.seq, after.epoch, read.len()), (0, 1, 3));
    // A replay by time finds the first record at or after it; after the last, the checkpoint is the head.
    let moved = streams.replay("s", "early/f", Some(0), ReplayFrom::Time(now_ms() + 60_000)).await.expect("replay");
    assert_eq!(moved, [(0, 3)]);
    let moved = streams.replay("s", "early/f", Some(0), ReplayFrom::Time(0)).await.expect("replay");
    assert_eq!(moved, [(0, 0)]);
    assert!(streams.replay("s", "early/f", Some(7), ReplayFrom::Time(0)).await.is_err(), "no shard 7");
    let described = streams.describe(Some("s")).await.expect("describe");
    let early = described[0].consumers.iter().find(|c| c.consumer == "early/f").expect("listed");
    assert_eq!(early.behind, 3);
    assert!(early.iterator_age_ms >= 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn retention_drops_the_oldest_records_past_the_bytes_and_the_age_but_never_reuses_a_sequence() {
    let dir = tempfile::tempdir().expect("dir");
    let streams = store(dir.path(), settings(1));
    // `tiny` keeps 100 bytes: ten records of 1 + 19 bytes leave the newest five.
    for i in 0..10 {
        let body = format!("{i:019}").into_bytes();
        streams.put("tiny", vec![("k".to_owned(), body)], None).await.expect("put").expect("valid");
    }
    let shard = &streams.describe(Some("tiny")).await.expect("describe")[0].shards[0];
    assert_eq!((shard.first_seq, shard.last_seq, shard.records, shard.bytes), (6, 10, 5, 100));
    // A record over the shard's share is refused outright.
    let refused = streams.put("tiny", vec![("k".to_owned(), vec![0; 100])], None).await.expect("db");
    assert!(matches!(refused, Err(StreamRefusal::TooLarge { limit: 100, .. })), "{refused:?}");
    // Age: records put before the retention window are swept.
    let aged = StreamDb::new(
        streams.db.clone(),
        streams.readers.clone(),
        StreamCatalog {
            default: StreamSettings { retention_ms: -1, ..settings(1) },
            named: BTreeMap::new(),
            max_record_bytes: 1 << 16,
        },
    );
    assert_eq!(aged.sweep().await.expect("sweep"), 5);
    let shard = &aged.describe(Some("tiny")).await.expect("describe")[0].shards[0];
    assert_eq!((shard.records, shard.bytes, shard.last_seq), (0, 0, 10));
    let next = aged.put("tiny", vec![("k".to_owned(), b"x".to_vec())], None).await.expect("put").expect("valid");
    assert_eq!(next[0].seq, 11, "sequences go on after a sweep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_checkpoint_write_reads_the_next_batch_after_it_unless_a_replay_moved_it() {
    let dir = tempfile::tempdir().expect("dir");
    let streams = store(dir.path(), settings(1));
    streams.put("s", records(&["a", "b", "c", "d", "e"]), None).await.expect("put").expect("valid");
    let (start, first) =
        streams.read_from_checkpoint("s", "f/f", 0, StreamStart::Oldest, 2, 1 << 20).await.expect("read");
    assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    let to = Checkpoint { seq: 2, epoch: start.epoch };
    let next = streams.advance_and_read("s", "f/f", 0, to, 2, 1 << 20).await.expect("advance").expect("moved");
    assert_eq!(next.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["c", "d"], "the two after the checkpoint");
    let (stored, _) = streams.read_from_checkpoint("s", "f/f", 0, StreamStart::Oldest, 2, 1 << 20).await.expect("read");
    assert_eq!(stored, to, "the checkpoint was written, not only read past");
    streams.replay("s", "f/f", None, ReplayFrom::Sequence(1)).await.expect("replay");
    let stale = Checkpoint { seq: 4, epoch: start.epoch };
    assert_eq!(streams.advance_and_read("s", "f/f", 0, stale, 2, 1 << 20).await.expect("advance"), None);
}
