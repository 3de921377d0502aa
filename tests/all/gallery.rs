//! The photo gallery example (`examples/photo-gallery`) end to end, on a real host with the example's own host
//! configuration, driven by a headless Chromium: sign in, upload a real PNG through a signed URL straight to object
//! storage, and see its thumbnail appear on every open page without a reload (made by the object trigger, announced
//! over the WebSocket).

use crate::observability::chromium;
use crate::support::{Host, component_arg, poll_until, send, workspace};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::{Value, json};
use std::io::Read as _;
use std::time::Duration;

/// A host serving the gallery with the sections of `examples/edgefn.toml` that configure it (the component named
/// after its built file, `photo_gallery`, and its front end from `examples/photo-gallery/public`).
fn gallery_host() -> (Host, tempfile::TempDir) {
    let shipped: toml::Table = std::fs::read_to_string(workspace().join("examples/edgefn.toml"))
        .expect("read examples/edgefn.toml")
        .parse()
        .expect("examples/edgefn.toml parses");
    let mut component = shipped["components"]["photo-gallery"].as_table().expect("the gallery's section").clone();
    let public = workspace().join("examples/photo-gallery/public");
    let mut assets = toml::Table::new();
    assets.insert("dir".into(), toml::Value::String(public.to_str().expect("utf-8").to_owned()));
    component.insert("assets".into(), toml::Value::Table(assets));
    let table = |name: &str, value: toml::Value| toml::Value::Table(toml::Table::from_iter([(name.to_owned(), value)]));
    let mut config = toml::Table::new();
    config.insert("components".into(), table("photo_gallery", toml::Value::Table(component)));
    config.insert("authorizers".into(), table("gallery", shipped["authorizers"]["gallery"].clone()));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("edgefn.toml");
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
    let host = Host::start(&["--config", path.to_str().expect("utf-8"), &component_arg("photo_gallery")]);
    (host, dir)
}

/// A session token for `user`, signed in over the API as the page does.
fn token(host: &Host, user: &str, password: &str) -> String {
    let body = json!({ "user": user, "password": password }).to_string();
    let reply = send("POST", &host.url("/api/session"), &[("content-type", "application/json")], body.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["token"].as_str().expect("a token").to_owned()
}

/// What `expression` evaluates to in `tab`, as JSON.
fn evaluate(tab: &Tab, expression: &str) -> Value {
    tab.evaluate(expression, false).expect("evaluate").value.unwrap_or(Value::Null)
}

/// Opens the gallery in a new tab and fills in and sends its sign-in form.
fn sign_in(browser: &Browser, host: &Host, user: &str, password: &str) -> std::sync::Arc<Tab> {
    let tab = browser.new_tab().expect("a tab");
    tab.navigate_to(&host.url("/")).expect("navigate").wait_until_navigated().expect("loaded");
    tab.wait_for_element("#sign-in-form:not([hidden]) #user").expect("the sign-in form").click().expect("focus");
    tab.type_str(user).expect("type");
    tab.wait_for_element("#password").expect("password field").click().expect("focus");
    tab.type_str(password).expect("type");
    tab.wait_for_element("#sign-in").expect("button").click().expect("sign in");
    tab
}

/// Opens the gallery in a new tab and signs in; answers once the page's WebSocket is open.
fn signed_in_page(browser: &Browser, host: &Host, user: &str, password: &str) -> std::sync::Arc<Tab> {
    let tab = sign_in(browser, host, user, password);
    tab.wait_for_element("#gallery:not([hidden])").expect("the gallery after signing in");
    let who = tab.wait_for_element("#who").expect("who").get_inner_text().expect("text");
    assert_eq!(who, format!("Signed in as {user}"));
    let form_shown = "document.getElementById('sign-in-form').getClientRects().length > 0";
    assert_eq!(evaluate(&tab, form_shown), json!(false), "the sign-in form is gone once signed in");
    tab.wait_for_element_with_custom_timeout("#live[data-state='open']", Duration::from_secs(20))
        .expect("the page's WebSocket opens");
    tab
}

/// The first thumbnail shown in `tab` once the browser has decoded it, as `WIDTHxHEIGHT`, or "" before that.
const SHOWN_THUMBNAIL: &str = "(() => { const img = document.querySelector('#photos figure img.thumb'); \
     return img && img.complete && img.naturalWidth ? `${img.naturalWidth}x${img.naturalHeight}` : ''; })()";

#[test]
fn the_photo_gallery_signs_in_uploads_a_png_and_every_open_page_shows_its_thumbnail_without_reloading() {
    let test = "the_photo_gallery_signs_in_uploads_a_png_and_every_open_page_shows_its_thumbnail_without_reloading";
    let Some(chromium) = chromium(test) else { return };
    let (host, dir) = gallery_host();

    // The API refuses what it should, with its reasons.
    let wrong = send("POST", &host.url("/api/session"), &[], br#"{"user": "ada", "password": "hopper"}"#);
    assert_eq!((wrong.status, wrong.json()["error"].as_str()), (401, Some("wrong name or password")));
    assert_eq!(send("GET", &host.url("/api/photos"), &[], b"").status, 401, "the listing needs a token");
    let bearer = format!("Bearer {}", token(&host, "ada", "lovelace"));
    let auth = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let text =
        send("POST", &host.url("/api/uploads"), &auth, br#"{"name":"a.txt","content_type":"text/plain","size":3}"#);
    assert_eq!(text.status, 415, "{}", text.body);
    let huge = send(
        "POST",
        &host.url("/api/uploads"),
        &auth,
        br#"{"name":"b.png","content_type":"image/png","size":99999999}"#,
    );
    assert_eq!(huge.status, 413, "{}", huge.body);
    // The front end is the host's own static files.
    let page = send("GET", &host.url("/"), &[], b"");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<h1>Photo gallery</h1>"), "{}", page.body);
    assert!(page.header("etag").is_some(), "served as a static file: {:?}", page.headers);

    let options = LaunchOptions::default_builder()
        .path(Some(chromium))
        .sandbox(false)
        .window_size(Some((1200, 900)))
        .build()
        .expect("launch options");
    let browser = Browser::new(options).expect("start chromium");

    // A wrong password is refused on the page.
    let tab = sign_in(&browser, &host, "ada", "not-her-password");
    let refused = tab.wait_for_element("#login-error:not([hidden])").expect("an error").get_inner_text().expect("text");
    assert_eq!(refused, "Wrong name or password.");
    tab.close(true).expect("close");

    // Two people have the gallery open; neither page reloads from here on (a reload would lose the marks).
    let ada = signed_in_page(&browser, &host, "ada", "lovelace");
    let grace = signed_in_page(&browser, &host, "grace", "hopper");
    for tab in [&ada, &grace] {
        assert_eq!(evaluate(tab, "document.querySelectorAll('#photos figure').length"), json!(0));
        evaluate(tab, "window.notReloaded = true");
    }

    // Ada uploads a real PNG (640 x 480); the thumbnail (320 x 240) appears on both pages.
    let photo = workspace().join("tests/fixtures/gallery/sunset.png");
    ada.activate().expect("ada's page in front");
    ada.wait_for_element("#file")
        .expect("file input")
        .set_input_files(&[photo.to_str().expect("utf-8")])
        .expect("pick");
    ada.wait_for_element("#upload").expect("upload button").click().expect("upload");
    for (name, tab) in [("ada's", &ada), ("grace's", &grace)] {
        poll_until(&format!("the thumbnail on {name} page"), Duration::from_secs(60), || {
            evaluate(tab, SHOWN_THUMBNAIL) == json!("320x240")
        });
        assert_eq!(evaluate(tab, "window.notReloaded"), json!(true), "{name} page did not reload");
        let caption = tab.wait_for_element("#photos figcaption").expect("a caption").get_inner_text().expect("text");
        assert_eq!(caption, "sunset.png · ada · 640×480");
    }
    let status = ada.wait_for_element("#status").expect("status").get_inner_text().expect("text");
    assert_eq!(status, "sunset.png is ready.");

    // What the pages show is what the store holds: one photo, its thumbnail a 320 x 240 PNG behind a signed URL.
    let listing = send("GET", &host.url("/api/photos"), &auth, b"").json();
    let photos = listing["photos"].as_array().expect("photos");
    assert_eq!(photos.len(), 1, "{listing}");
    let stored = &photos[0]["photo"];
    assert_eq!((stored["width"].as_u64(), stored["height"].as_u64()), (Some(640), Some(480)), "{listing}");
    let thumb_url = host.url(photos[0]["thumb_url"].as_str().expect("a signed URL"));
    let response = ureq::get(&thumb_url).call().expect("the thumbnail");
    assert_eq!(response.header("content-type"), Some("image/png"));
    let mut png = Vec::new();
    response.into_reader().read_to_end(&mut png).expect("read");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (width, height) = (&png[16..20], &png[20..24]);
    assert_eq!(
        (u32::from_be_bytes(width.try_into().expect("4")), u32::from_be_bytes(height.try_into().expect("4"))),
        (320, 240)
    );
    let original = ureq::get(&host.url(photos[0]["url"].as_str().expect("a signed URL"))).call().expect("the original");
    let mut bytes = Vec::new();
    original.into_reader().read_to_end(&mut bytes).expect("read");
    assert_eq!(bytes, std::fs::read(&photo).expect("the fixture"), "the original, byte for byte");

    // A file that only claims to be a PNG is refused by the trigger, and its uploader's page says why.
    let fake = dir.path().join("notes.png");
    std::fs::write(&fake, "these are notes, not a photo").expect("write");
    ada.wait_for_element("#file").expect("file input").set_input_files(&[fake.to_str().expect("utf-8")]).expect("pick");
    ada.wait_for_element("#upload").expect("upload button").click().expect("upload");
    poll_until("the refusal on ada's page", Duration::from_secs(60), || {
        evaluate(&ada, "document.getElementById('status').textContent")
            == json!("notes.png was refused: the file is not an image: upload a PNG or a JPEG")
    });
    assert_eq!(evaluate(&grace, "document.querySelectorAll('#photos figure').length"), json!(1), "nothing new shown");
    let listing = send("GET", &host.url("/api/photos"), &auth, b"").json();
    assert_eq!(listing["photos"].as_array().map(Vec::len), Some(1), "{listing}");

    let screenshot = ada
        .capture_screenshot(headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    let artifacts = workspace().join("target").join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    std::fs::write(artifacts.join("gallery.png"), &screenshot).expect("save the screenshot");
}
