//! The object store's atomicity, sweeping, limits, listing, copies and outbox, on real files and SQLite.

use super::*;
use sha2::{Digest as _, Sha256};

const LIMITS: ObjectLimits = ObjectLimits { max_object_bytes: 1 << 20, max_bucket_bytes: 64, max_objects: 3 };

fn store(dir: &Path) -> ObjectDb {
    let db = Database::open(dir).expect("open");
    ObjectDb::open(dir, db, LIMITS).expect("object store")
}

fn files(dir: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("objects").join(sub))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn text(store: &ObjectDb, bucket: &str, key: &str) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime
        .block_on(store.read(bucket, key, 0, u64::MAX))
        .expect("read")
        .map(|(_, bytes)| String::from_utf8(bytes).expect("utf-8"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_replace_is_whole_or_not_at_all_and_leaves_one_file_per_object() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(dir.path());
    let first = store.put_bytes("b", "k", b"first", PutOptions::default()).await.expect("put").expect("room");
    assert_eq!(first.etag, hex::encode(Sha256::digest(b"first")));
    assert_eq!(first.content_type, "application/octet-stream");
    store.put_bytes("b", "k", b"second", PutOptions::default()).await.expect("put").expect("room");
    assert_eq!(files(dir.path(), "blobs").len(), 1, "the replaced file is gone");
    // An upload that is dropped stores nothing and leaves no file.
    let mut abandoned = store.begin("b", "k", PutOptions::default()).expect("begin").expect("valid");
    abandoned.write(b"third").expect("write").expect("room");
    assert_eq!(files(dir.path(), "tmp").len(), 1);
    drop(abandoned);
    assert_eq!(files(dir.path(), "tmp"), Vec::<String>::new());
    let (info, bytes) = store.read("b", "k", 0, 100).await.expect("read").expect("there");
    assert_eq!((bytes.as_slice(), info.size), (b"second".as_slice(), 6));
    assert_eq!(store.read("b", "k", 2, 3).await.expect("read").expect("there").1, b"con");
}

#[test]
fn what_a_crash_leaves_is_swept_at_open_and_the_old_object_stays_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("runtime");
    let first = store(dir.path());
    runtime.block_on(first.put_bytes("b", "k", b"old", PutOptions::default())).expect("put").expect("room");
    // A crash mid-upload (a temporary file), and one between the rename and the commit (a file no row names).
    let mut torn = first.begin("b", "k", PutOptions::default()).expect("begin").expect("valid");
    torn.write(b"half of the new one").expect("write").expect("room");
    std::mem::forget(torn);
    std::fs::write(dir.path().join("objects/blobs/0123456789abcdef"), b"renamed, never committed").expect("orphan");
    drop(first);
    let reopened = store(dir.path());
    assert_eq!(files(dir.path(), "tmp"), Vec::<String>::new());
    assert_eq!(files(dir.path(), "blobs").len(), 1, "only the committed object's file is left");
    assert_eq!(text(&reopened, "b", "k").as_deref(), Some("old"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn limits_refuse_with_their_reason_and_store_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(dir.path());
    let too_big = PutOptions { max_bytes: Some(4), ..PutOptions::default() };
    let mut upload = store.begin("b", "big", too_big).expect("begin").expect("valid");
    let refused = upload.write(b"12345").expect("write").expect_err("over the signed bound");
    assert!(refused.to_string().contains("over 4 bytes") && refused.to_string().contains("signed"), "{refused}");
    let refused = store.finish(upload, 0).await.expect("finish").expect_err("spoilt");
    assert!(matches!(refused, ObjectRefusal::ObjectTooLarge { .. }), "{refused}");
    for key in ["a", "b", "c"] {
        store.put_bytes("b", key, b"x", PutOptions::default()).await.expect("put").expect("room");
    }
    let full = store.put_bytes("b", "d", b"x", PutOptions::default()).await.expect("put").expect_err("full");
    assert!(full.to_string().contains("bucket `b` is full: it holds 3 objects"), "{full}");
    // Replacing one object needs no new slot, but its bytes count.
    store.put_bytes("b", "a", &[1; 60], PutOptions::default()).await.expect("put").expect("room");
    let over = store.put_bytes("b", "a", &[1; 63], PutOptions::default()).await.expect("put").expect_err("bytes");
    assert!(over.to_string().contains("62 bytes"), "{over}");
    assert_eq!(store.head("b", "a").await.expect("head").expect("there").size, 60, "the refused write changed nothing");
    assert_eq!(files(dir.path(), "blobs").len(), 3);
    for (key, options) in [
        ("", PutOptions::default()),
        ("bad\u{7}", PutOptions::default()),
        ("a/../b", PutOptions::default()),
        ("./b", PutOptions::default()),
        ("k", PutOptions { content_type: "nonsense".into(), ..PutOptions::default() }),
        ("k", PutOptions { metadata: vec![("a b".into(), "v".into())], ..PutOptions::default() }),
    ] {
        assert!(store.begin("b", key, options).expect("begin").is_err(), "{key:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn listing_pages_by_prefix_copies_share_bytes_and_each_change_is_an_event() {
    let dir = tempfile::tempdir().expect("dir");
    let store = ObjectDb::open(
        dir.path(),
        Database::open(dir.path()).expect("db"),
        ObjectLimits { max_objects: 100, max_bucket_bytes: 1 << 20, ..LIMITS },
    )
    .expect("store");
    for key in ["p/1", "p/2", "p/3", "q/1"] {
        let options = PutOptions { correlation_id: format!("work-{key}"), ..PutOptions::default() };
        store.put_bytes("b", key, key.as_bytes(), options).await.expect("put").expect("room");
    }
    let (page, more) = store.list("b", "p/", None, 2).await.expect("list");
    assert_eq!((page.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), more), (vec!["p/1", "p/2"], true));
    let (page, more) = store.list("b", "p/", Some("p/2".into()), 2).await.expect("list");
    assert_eq!((page.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), more), (vec!["p/3"], false));
    let copy = store.copy(("b", "p/1"), ("c", "copied"), "work-copy").await.expect("copy").expect("room");
    assert_eq!(copy.etag, hex::encode(Sha256::digest(b"p/1")));
    store.put_bytes("b", "p/1", b"changed", PutOptions::default()).await.expect("put").expect("room");
    assert_eq!(store.read("c", "copied", 0, 100).await.expect("read").expect("there").1, b"p/1");
    assert!(store.delete("b", "q/1", "work-delete").await.expect("delete"));
    assert!(!store.delete("b", "q/1", "again").await.expect("delete"), "deleting nothing says so");
    let events = store.pending_events(100).await.expect("events");
    let seen: Vec<(&str, &str, &str)> =
        events.iter().map(|e| (e.event.as_str(), e.key.as_str(), e.correlation_id.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("created", "p/1", "work-p/1"),
            ("created", "p/2", "work-p/2"),
            ("created", "p/3", "work-p/3"),
            ("created", "q/1", "work-q/1"),
            ("created", "copied", "work-copy"),
            ("created", "p/1", ""),
            ("deleted", "q/1", "work-delete"),
        ]
    );
    store.remove_events(events.iter().map(|e| e.id).collect()).await.expect("remove");
    assert!(store.pending_events(100).await.expect("events").is_empty());
    let usage = store.usage().await.expect("usage");
    assert_eq!(usage.iter().map(|u| (u.bucket.as_str(), u.objects)).collect::<Vec<_>>(), [("b", 3), ("c", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_large_upload_in_many_writes_has_the_etag_of_its_bytes_and_a_dropped_one_stores_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Database::open(dir.path()).expect("db");
    let limits = ObjectLimits { max_object_bytes: 64 << 20, max_bucket_bytes: 64 << 20, max_objects: 10 };
    let store = ObjectDb::open(dir.path(), db, limits).expect("store");
    let bytes: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut upload = store.begin("b", "large", PutOptions::default()).expect("begin").expect("valid");
    for chunk in bytes.chunks(64 << 10) {
        upload.write(chunk).expect("write").expect("room");
    }
    let info = store.finish(upload, 1).await.expect("finish").expect("room");
    assert_eq!(info.etag, hex::encode(Sha256::digest(&bytes)), "the ETag is the hash of every byte, in order");
    let mut dropped = store.begin("b", "dropped", PutOptions::default()).expect("begin").expect("valid");
    for chunk in bytes.chunks(1 << 20) {
        dropped.write(chunk).expect("write").expect("room");
    }
    drop(dropped);
    assert_eq!(files(dir.path(), "tmp"), Vec::<String>::new());
    assert!(store.head("b", "dropped").await.expect("head").is_none());
}
