//! The photo gallery: the serverless case study, on one edge node.
//!
//! - `public/` is the front end (HTML, CSS, a little JavaScript), served by the host itself from `/`.
//! - `POST /api/session` signs a user in and answers a session token ([`session`]); every other route and the
//!   WebSocket need it, checked by the host's `gallery` authorizer before any function runs.
//! - `POST /api/uploads` answers a signed URL with which the browser `PUT`s the photo straight into the object
//!   bucket `photos` (no function holds the bytes), and remembers who is uploading what.
//! - The upload's `created` event runs [`make_thumbnail`]: it decodes the photo, stores a thumbnail next to it,
//!   records the photo in the key-value store `gallery`, and tells every open page over its WebSocket.
//! - `GET /api/photos` lists the photos, newest first, with signed URLs of their thumbnails and originals.
//! - `/api/live` is the WebSocket each open page holds; its connections are kept in the store while open.
//!
//! ```sh
//! edgefn up --config examples/edgefn.toml examples/photo-gallery
//! ```
//! then open http://127.0.0.1:8080/ and sign in as `ada` / `lovelace` (`examples/edgefn.toml` lists the users).

pub mod session;
pub mod thumbnail;

use edgefn::kv::Store;
use edgefn::objects::{Bucket, ObjectEvent};
use edgefn::prelude::*;
use edgefn::websocket::{self, WebSocketEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// The bucket the photos and their thumbnails live in.
const BUCKET: &str = "photos";
/// The key-value store of the photo records, the uploads in progress and the open pages.
const STORE: &str = "gallery";
/// The largest upload.
pub const MAX_UPLOAD_BYTES: u64 = 10 << 20;
/// How long a signed upload URL, and the record of who asked for it, lasts.
const UPLOAD_WINDOW: Duration = Duration::from_secs(600);
/// How long the signed URLs of a listing last (a page reloads the listing when it reconnects).
const VIEW_WINDOW: Duration = Duration::from_secs(3600);
/// Photos in one listing.
const PAGE: u32 = 100;

/// Who is uploading what, kept from the signing of an upload URL until its thumbnail is made.
#[derive(Debug, Serialize, Deserialize)]
struct PendingUpload {
    owner: String,
    name: String,
    content_type: String,
}

/// A photo of the gallery, as stored and as listed (the listing adds signed URLs).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Photo {
    id: String,
    name: String,
    owner: String,
    width: u32,
    height: u32,
    thumb_width: u32,
    thumb_height: u32,
    uploaded_at: i64,
}

impl Photo {
    /// Its record's key: newest first in key order.
    fn record_key(&self) -> String {
        format!("photo:{:013}:{}", 9_999_999_999_999_i64.saturating_sub(self.uploaded_at), self.id)
    }

    /// What a page shows: the photo and signed URLs for its thumbnail and original.
    fn for_page(&self) -> Result<serde_json::Value> {
        let bucket = Bucket::open(BUCKET);
        Ok(json!({
            "photo": self,
            "thumb_url": bucket.sign_download(&thumb_key(&self.id), VIEW_WINDOW)?,
            "url": bucket.sign_download(&upload_key(&self.id), VIEW_WINDOW)?,
        }))
    }
}

fn upload_key(id: &str) -> String {
    format!("uploads/{id}")
}

fn thumb_key(id: &str) -> String {
    format!("thumbs/{id}.png")
}

/// The signed-in user: the `sub` of the token the host verified.
fn user(req: &Request) -> Result<String> {
    req.claims()
        .and_then(|claims| claims["sub"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::unauthorized("sign in first"))
}

#[derive(Debug, Deserialize)]
struct NewUpload {
    name: String,
    content_type: String,
    size: u64,
}

/// `POST /api/uploads` with `{"name", "content_type", "size"}`: `{"id", "url"}`, the URL to `PUT` the photo to
/// (with that content type, at most [`MAX_UPLOAD_BYTES`], within ten minutes).
#[function(trigger = http("/api/uploads", method = "POST", auth = "gallery", scopes = ["photos"]))]
fn new_upload(req: Request) -> Result<Response> {
    let owner = user(&req)?;
    let upload: NewUpload = req.json()?;
    if !matches!(upload.content_type.as_str(), "image/png" | "image/jpeg") {
        return Err(Error::new(415, format!("{}: upload a PNG or a JPEG, not {:?}", upload.name, upload.content_type)));
    }
    if upload.size > MAX_UPLOAD_BYTES {
        let message = format!("{} is {} bytes; the most is {MAX_UPLOAD_BYTES}", upload.name, upload.size);
        return Err(Error::new(413, message));
    }
    let name: String = upload.name.chars().filter(|c| !c.is_control()).take(120).collect();
    let id = edgefn::random::id();
    let pending = PendingUpload { owner, name, content_type: upload.content_type.clone() };
    // Kept past the URL's window: an upload begun just before it closes may take a while to arrive.
    Store::open(STORE)?.set_json_with_ttl(&format!("pending:{id}"), &pending, 2 * UPLOAD_WINDOW)?;
    let url =
        Bucket::open(BUCKET).sign_upload(&upload_key(&id), UPLOAD_WINDOW, MAX_UPLOAD_BYTES, &upload.content_type)?;
    Response::json(&json!({ "id": id, "url": url }))
}

/// `GET /api/photos`: `{"photos": [...]}`, newest first.
#[function(trigger = http("/api/photos", method = "GET", auth = "gallery", scopes = ["photos"]))]
fn list_photos(req: Request) -> Result<Response> {
    user(&req)?;
    let store = Store::open(STORE)?;
    let page = store.list("photo:", None, PAGE)?;
    let mut photos = Vec::with_capacity(page.keys.len());
    for key in &page.keys {
        if let Some(photo) = store.get_json::<Photo>(key)? {
            photos.push(photo.for_page()?);
        }
    }
    Ok(Response::json(&json!({ "photos": photos }))?.with_header("cache-control", "no-store"))
}

/// A new upload: its thumbnail, its record, and a message to every open page. Delivered at least once, so each
/// step is one a second run repeats harmlessly (the same keys, the same values). A file that is not a photo is
/// deleted and its owner told why; retrying would not change it.
#[function(trigger = object("photos", events = ["created"], prefix = "uploads/", batch_size = 1, max_retries = 3))]
fn make_thumbnail(batch: Batch<ObjectEvent>) -> Result<()> {
    let store = Store::open(STORE)?;
    let bucket = Bucket::open(BUCKET);
    for message in &batch {
        let event = message.body();
        let id = event.key.trim_start_matches("uploads/").to_owned();
        // A photo is listed once however often its upload URL is used: its record's key is found by its id.
        let index_key = format!("id:{id}");
        let recorded = match store.get(&index_key)? {
            Some(key) => store.get_json::<Photo>(&String::from_utf8_lossy(&key))?,
            None => None,
        };
        let pending = store.get_json::<PendingUpload>(&format!("pending:{id}"))?;
        let (owner, name) = match (pending, &recorded) {
            (Some(pending), _) => (pending.owner, pending.name),
            (None, Some(photo)) => (photo.owner.clone(), photo.name.clone()),
            (None, None) => ("someone".into(), id.clone()),
        };
        let Some((_, bytes)) = bucket.get(&event.key)? else {
            // Deleted since: nothing to show.
            continue;
        };
        let made = match thumbnail::make(&bytes) {
            Ok(made) => made,
            Err(reason) => {
                eprintln!("upload {id} ({name}) by {owner} is refused: {reason}");
                bucket.delete(&event.key)?;
                store.delete(&format!("pending:{id}"))?;
                // Its upload URL used again with a file that is not a photo: the photo it held is gone too.
                if let Some(key) = store.get(&index_key)? {
                    store.delete(&String::from_utf8_lossy(&key))?;
                    store.delete(&index_key)?;
                    bucket.delete(&thumb_key(&id))?;
                    tell_pages(&store, &json!({ "type": "removed", "id": id }), None)?;
                }
                let refused = json!({ "type": "refused", "id": id, "reason": reason });
                tell_pages(&store, &refused, Some(&owner))?;
                continue;
            }
        };
        bucket.put(&thumb_key(&id), &made.png, "image/png")?;
        let photo = Photo {
            id: id.clone(),
            name,
            owner,
            width: made.photo_width,
            height: made.photo_height,
            thumb_width: made.width,
            thumb_height: made.height,
            uploaded_at: recorded.as_ref().map_or(event.at, |photo| photo.uploaded_at),
        };
        let record_key = photo.record_key();
        store.set_json(&record_key, &photo)?;
        store.set(&index_key, &record_key)?;
        store.delete(&format!("pending:{id}"))?;
        println!("photo {id} ({}) by {} is ready: {}x{}", photo.name, photo.owner, photo.width, photo.height);
        let mut ready = photo.for_page()?;
        ready["type"] = json!("photo");
        tell_pages(&store, &ready, None)?;
    }
    Ok(())
}

/// Sends `message` to every open page, or only to `user`'s. A page that cannot take it (gone with a restarted node
/// before its disconnect ran, or not reading) is skipped: it reloads the listing when it reconnects, and its entry
/// expires unless its keep-alives renew it.
fn tell_pages(store: &Store, message: &serde_json::Value, user: Option<&str>) -> Result<()> {
    let text = message.to_string();
    let mut cursor = None;
    loop {
        let page = store.list("live:", cursor.as_deref(), 500)?;
        for key in &page.keys {
            if let Some(user) = user
                && store.get(key)?.as_deref() != Some(user.as_bytes())
            {
                continue;
            }
            if let Err(error) = websocket::send(&key["live:".len()..], &text) {
                eprintln!("a page missed the news: {}", error.message());
            }
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// A page opens its WebSocket (with its session token as `access_token`: browsers cannot set headers on one).
#[function(trigger = websocket("/api/live", on = "connect", auth = "gallery", scopes = ["photos"]))]
fn page_opened(event: WebSocketEvent) -> Result<()> {
    remember_page(&event)
}

/// A page's keep-alive (`ping`, every 30 s): renews its entry and answers, so the connection never looks idle.
#[function(trigger = websocket("/api/live", on = "message", auth = "gallery", scopes = ["photos"]))]
fn page_message(event: WebSocketEvent) -> Result<()> {
    match event.text() {
        Some("ping") => {
            remember_page(&event)?;
            websocket::send(&event.connection_id, r#"{"type":"pong"}"#)
        }
        _ => Ok(()),
    }
}

/// How long a page's entry outlives its last keep-alive.
const PAGE_TTL: Duration = Duration::from_secs(120);

fn remember_page(event: &WebSocketEvent) -> Result<()> {
    let who = event.subject.clone().unwrap_or_default();
    Store::open(STORE)?.set_with_ttl(&format!("live:{}", event.connection_id), who, PAGE_TTL)
}

/// A page closed (or went quiet past the host's idle timeout).
#[function(trigger = websocket("/api/live", on = "disconnect", auth = "gallery", scopes = ["photos"]))]
fn page_closed(event: WebSocketEvent) -> Result<()> {
    Store::open(STORE)?.delete(&format!("live:{}", event.connection_id))
}
