//! The client side of the admin API: where it is, how to authenticate, one call. Every command other than `up`,
//! `new` and `inspect` goes through it.

use anyhow::{Context as _, bail};
use serde_json::Value;
use std::path::PathBuf;

/// Where `edgefn up` listens for the admin API unless told otherwise.
const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8081";

/// Where the admin API is and how to authenticate: flags, then the environment, then what `edgefn up` wrote into
/// the data dir (`admin-url`, `admin-token`), then the default address.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AdminArgs {
    /// The admin API of the running host [default: the data dir's `admin-url`, else http://127.0.0.1:8081].
    #[arg(long, env = "EDGEFN_ADMIN_URL", global = true)]
    admin: Option<String>,
    /// The admin token; read from `<data>/admin-token` when not given.
    #[arg(long, env = "EDGEFN_ADMIN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The host's data directory, where `edgefn up` wrote its admin URL and token.
    #[arg(long, default_value = "./.edgefn", global = true)]
    data: PathBuf,
    /// Print the admin API's exact answer as JSON (for scripts) instead of a table or summary.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl AdminArgs {
    /// The host's data dir.
    pub(crate) fn data(&self) -> &std::path::Path {
        &self.data
    }

    /// The admin API's base URL: `--admin` (or `EDGEFN_ADMIN_URL`), else the one the host wrote into its data
    /// dir, else the default.
    pub(crate) fn url(&self) -> String {
        let written = || std::fs::read_to_string(self.data.join(crate::admin::URL_FILE)).ok();
        let url = self.admin.clone().or_else(written).unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned());
        url.trim().trim_end_matches('/').to_owned()
    }

    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let path = self.data.join(crate::admin::TOKEN_FILE);
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!("failed to read the admin token from {} (give --token, or the host's --data)", path.display())
        })?;
        Ok(token.trim().to_owned())
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.send(method, path, |request| {
            match body {
                Some(body) => request.send_json(body),
                None => request.call(),
            }
            .map_err(Box::new)
        })
    }

    /// A `GET` with query parameters (encoded here); those without a value are left out.
    pub(crate) fn get_with(&self, path: &str, query: &[(&str, Option<String>)]) -> anyhow::Result<Value> {
        self.send("GET", path, |request| with_query(request, query).call().map_err(Box::new))
    }

    /// A `GET` whose answer is read as it comes (server-sent events): each line, until the host closes it.
    pub(crate) fn stream_lines(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<impl Iterator<Item = std::io::Result<String>>> {
        use std::io::BufRead as _;
        let url = format!("{}{path}", self.url());
        let request = ureq::request("GET", &url).set("authorization", &format!("Bearer {}", self.token()?));
        let response = match with_query(request, query).call() {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let body: Value = response.into_json().unwrap_or(Value::Null);
                bail!("{status}: {}", body.get("error").and_then(Value::as_str).unwrap_or("no details"));
            }
            Err(error) => bail!("could not reach the admin API at {url}: {error} (is `edgefn up` running?)"),
        };
        Ok(std::io::BufReader::new(response.into_reader()).lines())
    }

    /// A call whose body is raw bytes.
    pub(crate) fn call_raw(&self, method: &str, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.send(method, path, |request| request.send_bytes(&body).map_err(Box::new))
    }

    /// A call whose body streams from `reader` (an object of any size), with its content type.
    pub(crate) fn call_reader(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        reader: impl std::io::Read,
    ) -> anyhow::Result<Value> {
        self.send(method, path, |request| request.set("content-type", content_type).send(reader).map_err(Box::new))
    }

    /// A `GET` whose answer is bytes, read as they come.
    pub(crate) fn get_reader(&self, path: &str) -> anyhow::Result<Box<dyn std::io::Read + Send + Sync>> {
        let url = format!("{}{path}", self.url());
        let request = ureq::request("GET", &url).set("authorization", &format!("Bearer {}", self.token()?));
        match request.call() {
            Ok(response) => Ok(response.into_reader()),
            Err(ureq::Error::Status(status, response)) => {
                let body: Value = response.into_json().unwrap_or(Value::Null);
                bail!("{status}: {}", body.get("error").and_then(Value::as_str).unwrap_or("no details"));
            }
            Err(error) => bail!("could not reach the admin API at {url}: {error} (is `edgefn up` running?)"),
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        send: impl FnOnce(ureq::Request) -> Result<ureq::Response, Box<ureq::Error>>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.url());
        let request = ureq::request(method, &url).set("authorization", &format!("Bearer {}", self.token()?));
        let response = match send(request).map_err(|error| *error) {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let body: Value = response.into_json().unwrap_or(Value::Null);
                let message = body.get("error").and_then(Value::as_str).unwrap_or("no details");
                bail!("{status}: {message}");
            }
            Err(error) => bail!("could not reach the admin API at {url}: {error} (is `edgefn up` running?)"),
        };
        Ok(response.into_json()?)
    }
}

fn with_query(mut request: ureq::Request, query: &[(&str, Option<String>)]) -> ureq::Request {
    for (name, value) in query {
        if let Some(value) = value {
            request = request.query(name, value);
        }
    }
    request
}

pub(crate) fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON: {text}"))
}
