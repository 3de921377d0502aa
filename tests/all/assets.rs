//! Static files deployed with a component and served by the host (issue 24, item 1), on a real host over real HTTP:
//! ETags and 304, ranges, precompressed forms, folders, the single-page-app fallback, cache rules, routes of
//! functions winning over files, limits, and a rollback serving the old files again.

use crate::support::{Host, component_arg, get, send};
use std::path::Path;
use std::time::Duration;

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join("edgefn.toml");
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8").to_owned()
}

const APP_JS: &str = "console.log('app');";

#[test]
fn static_files_are_served_with_etags_ranges_compressed_forms_cache_rules_and_routes_win() {
    let site = folder(&[
        ("index.html", "<h1>home</h1>"),
        ("app.js", APP_JS),
        // The forms a build tool would write next to the file (their bytes are the host's to pass on, not to read).
        ("app.js.br", "brotli form"),
        ("app.js.gz", "gzip form"),
        ("docs/index.html", "<h1>docs</h1>"),
        ("img/logo.svg", "<svg/>"),
        ("hello/world", "a file hidden by a function's route"),
    ]);
    let config = config_file(
        site.path(),
        &format!(
            "[components.hello.assets]\ndir = \"{}\"\nspa_fallback = \"index.html\"\n\
             cache = {{ \"/img/**\" = \"public, max-age=31536000, immutable\" }}\n",
            site.path().display()
        ),
    );
    let host = Host::start(&["--config", &config, &component_arg("hello")]);

    let home = get(&host.url("/"));
    assert_eq!(home.status, 200, "{}", home.body);
    assert_eq!(home.body, "<h1>home</h1>");
    assert_eq!(home.header("content-type"), Some("text/html"));
    assert_eq!(home.header("cache-control"), Some("public, max-age=0, must-revalidate"));
    assert!(home.header("last-modified").is_some());
    let etag = home.header("etag").expect("an ETag").to_owned();
    let again = send("GET", &host.url("/"), &[("if-none-match", &etag)], b"");
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let other = send("GET", &host.url("/"), &[("if-none-match", "\"something-else\"")], b"");
    assert_eq!(other.status, 200, "another ETag gets the file");
    // If-None-Match wins over If-Modified-Since (RFC 9110): an old ETag with a fresh date still gets the file.
    let fresh_date = home.header("last-modified").expect("date").to_owned();
    let stale = send("GET", &host.url("/"), &[("if-none-match", "\"old\""), ("if-modified-since", &fresh_date)], b"");
    assert_eq!(stale.status, 200);

    let part = send("GET", &host.url("/app.js"), &[("range", "bytes=0-6")], b"");
    assert_eq!((part.status, part.body.as_str()), (206, "console"));
    assert_eq!(part.header("content-range"), Some(format!("bytes 0-6/{}", APP_JS.len()).as_str()));
    let plain = get(&host.url("/app.js"));
    assert_eq!(plain.body, APP_JS);
    assert_eq!(plain.header("content-type"), Some("text/javascript"));
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    let plain_etag = plain.header("etag").expect("etag").to_owned();
    // A range with If-Range of another version's ETag gets the whole file instead.
    let changed = send("GET", &host.url("/app.js"), &[("range", "bytes=0-6"), ("if-range", "\"old\"")], b"");
    assert_eq!((changed.status, changed.body.as_str()), (200, APP_JS));
    let same = send("GET", &host.url("/app.js"), &[("range", "bytes=0-6"), ("if-range", &plain_etag)], b"");
    assert_eq!(same.status, 206);

    let brotli = send("GET", &host.url("/app.js"), &[("accept-encoding", "gzip, br")], b"");
    assert_eq!((brotli.body.as_str(), brotli.header("content-encoding")), ("brotli form", Some("br")));
    assert_eq!(brotli.header("content-type"), Some("text/javascript"));
    let brotli_etag = brotli.header("etag").expect("etag").to_owned();
    assert_ne!(brotli_etag, plain_etag, "each form has its own ETag");
    let gzip = send("GET", &host.url("/app.js"), &[("accept-encoding", "gzip")], b"");
    assert_eq!((gzip.body.as_str(), gzip.header("content-encoding")), ("gzip form", Some("gzip")));
    let revalidated =
        send("GET", &host.url("/app.js"), &[("accept-encoding", "br"), ("if-none-match", &brotli_etag)], b"");
    assert_eq!(revalidated.status, 304);
    let cross = send("GET", &host.url("/app.js"), &[("accept-encoding", "br"), ("if-none-match", &plain_etag)], b"");
    assert_eq!(cross.status, 200, "the identity form's ETag does not validate the Brotli form");
    // If-Range holds for the form being served only: the Brotli form's ETag gets a range of the Brotli form, and
    // the whole identity form when that is what is served.
    let ranged = [("range", "bytes=0-6"), ("if-range", brotli_etag.as_str()), ("accept-encoding", "br")];
    let brotli_range = send("GET", &host.url("/app.js"), &ranged, b"");
    assert_eq!((brotli_range.status, brotli_range.body.as_str()), (206, "brotli "));
    let identity = send("GET", &host.url("/app.js"), &ranged[..2], b"");
    assert_eq!((identity.status, identity.body.as_str()), (200, APP_JS), "another form's ETag: the whole file");
    // A range past the end with a stale ETag is no 416: the client's copy is gone, it gets the file.
    let stale = send("GET", &host.url("/app.js"), &[("range", "bytes=5000-"), ("if-range", "\"old\"")], b"");
    assert_eq!((stale.status, stale.body.as_str()), (200, APP_JS));
    let unsatisfiable = send("GET", &host.url("/app.js"), &[("range", "bytes=5000-"), ("if-range", &plain_etag)], b"");
    assert_eq!(unsatisfiable.status, 416, "the current ETag and a range past the end");
    // If-Range by date: exactly the Last-Modified date gets the range, another date the whole file.
    let modified = plain.header("last-modified").expect("last-modified").to_owned();
    let by_date = send("GET", &host.url("/app.js"), &[("range", "bytes=0-6"), ("if-range", &modified)], b"");
    assert_eq!(by_date.status, 206);
    let old_date = [("range", "bytes=0-6"), ("if-range", "Wed, 21 Oct 2015 07:28:00 GMT")];
    let by_old_date = send("GET", &host.url("/app.js"), &old_date, b"");
    assert_eq!((by_old_date.status, by_old_date.body.as_str()), (200, APP_JS));

    let head = send("HEAD", &host.url("/app.js"), &[], b"");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.header("content-length"), Some(APP_JS.len().to_string().as_str()));

    // A folder: its index.html (without the slash, a redirect there, which the client follows).
    assert_eq!(get(&host.url("/docs/")).body, "<h1>docs</h1>");
    assert_eq!(get(&host.url("/docs")).body, "<h1>docs</h1>");
    let logo = get(&host.url("/img/logo.svg"));
    assert_eq!(logo.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(logo.header("content-type"), Some("image/svg+xml"));

    // The function's route wins over the file at the same path.
    assert_eq!(get(&host.url("/hello/world")).body, "Hello, world!");
    // A client-side route gets the app; a missing file does not.
    let deep = get(&host.url("/orders/42/edit"));
    assert_eq!((deep.status, deep.body.as_str()), (200, "<h1>home</h1>"));
    let missing = get(&host.url("/missing.png"));
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing.body.contains("no function at /missing.png"), "{}", missing.body);
    assert_eq!(send("POST", &host.url("/app.js"), &[], b"x").status, 404, "files answer GET and HEAD only");
    host.wait_for_log_line(&["function=\"hello:static\"", "path=/app.js", "status=206"]);
}

#[test]
fn a_rollback_serves_the_files_of_the_version_it_goes_back_to_and_limits_refuse_with_the_reason() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(config_dir.path(), "[limits]\nmax_asset_files = 3\n");
    let host = Host::start(&["--config", &config, &component_arg("hello")]);
    let wasm = component_arg("hello");
    let first = folder(&[("index.html", "first")]);
    let second = folder(&[("index.html", "second"), ("extra.css", "body{}")]);
    let deploy = |dir: &Path| host.cli(&["deploy", &wasm, "--name", "hello", "--assets", dir.to_str().expect("utf-8")]);

    assert!(deploy(first.path()).success);
    let one = get(&host.url("/"));
    assert_eq!(one.body, "first");
    assert!(deploy(second.path()).success);
    let two = get(&host.url("/"));
    assert_eq!(two.body, "second");
    assert_ne!(two.header("etag"), one.header("etag"));
    assert_eq!(get(&host.url("/extra.css")).status, 200);

    host.cli_ok(&["rollback", "hello"]);
    let back = get(&host.url("/"));
    assert_eq!(back.body, "first");
    assert_eq!(back.header("etag"), one.header("etag"), "the very files of that version");
    assert_eq!(get(&host.url("/extra.css")).status, 404, "the newer version's files went with it");

    // Over the limit: refused with the limit named, and what was live keeps serving.
    let crowded = folder(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    let refused = deploy(crowded.path());
    assert!(!refused.success);
    assert!(refused.stderr.contains("more than 3 files (limits.max_asset_files)"), "{}", refused.stderr);
    assert_eq!(get(&host.url("/")).body, "first");
    // A deploy without files serves none.
    host.cli_ok(&["deploy", &wasm, "--name", "hello"]);
    assert_eq!(get(&host.url("/")).status, 404);
    assert_eq!(get(&host.url("/hello/ada")).body, "Hello, ada!");
}

#[test]
fn static_files_deployed_on_one_node_are_served_by_every_node_of_a_cluster_and_roll_back_there() {
    let test = "static_files_deployed_on_one_node_are_served_by_every_node_of_a_cluster_and_roll_back_there";
    let Some(cluster) = crate::cluster::Cluster::new(test) else { return };
    let a = cluster.node_configured("a", &[], "");
    let b = cluster.node_configured("b", &[], "");
    let wasm = component_arg("hello");
    let deploy = |dir: &Path| a.cli_ok(&["deploy", &wasm, "--name", "hello", "--assets", dir.to_str().expect("utf-8")]);
    let served = |host: &Host, path: &str, body: &str| {
        crate::support::poll_until(&format!("{path} = {body:?} on {}", host.base), Duration::from_secs(30), || {
            get(&host.url(path)).body == body
        });
    };
    let first = folder(&[("index.html", "first")]);
    let second = folder(&[("index.html", "second"), ("app/extra.css", "body{}")]);
    deploy(first.path());
    // Node b had none of these files: it fetched the bundle through the cluster before going live with them.
    served(&b, "/", "first");
    deploy(second.path());
    served(&b, "/", "second");
    assert_eq!(get(&b.url("/app/extra.css")).body, "body{}");
    let etag = |host: &Host| get(&host.url("/")).header("etag").map(str::to_owned);
    assert_eq!(etag(&a), etag(&b), "the same bytes on both nodes");
    // A rollback on node b: both serve the first files again.
    b.cli_ok(&["rollback", "hello"]);
    served(&a, "/", "first");
    served(&b, "/", "first");
    assert_eq!(get(&a.url("/app/extra.css")).status, 404);
    assert_eq!(get(&a.url("/hello/ada")).body, "Hello, ada!", "the functions are there too");
}
