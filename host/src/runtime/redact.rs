//! A function's stdout and stderr with its secrets masked: the host prints guest output on its own streams, and
//! a function that prints a secret (in a debug line, an error) must not leak it into the host's logs.
//!
//! Output is buffered by line (or 8 KiB, whichever comes first) so that a secret split across two writes is still
//! seen whole; each secret value is replaced by `[secret NAME]`.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::AsyncStdoutStream;

/// Flush a partial line once it is this long.
const MAX_LINE: usize = 8 << 10;

#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Stdout,
    Stderr,
}

/// A WASI output stream that masks `secrets` and writes to the host's `target`.
pub(super) fn stream(target: Target, secrets: Arc<Vec<(String, String)>>) -> AsyncStdoutStream {
    AsyncStdoutStream::new(MAX_LINE, Redactor { target, secrets, line: Vec::new() })
}

struct Redactor {
    target: Target,
    secrets: Arc<Vec<(String, String)>>,
    line: Vec<u8>,
}

impl Redactor {
    fn emit(&mut self, upto: usize) {
        let chunk: Vec<u8> = self.line.drain(..upto).collect();
        let masked = mask(&String::from_utf8_lossy(&chunk), &self.secrets);
        // The host's own stdio: a write that fails has nowhere to be reported.
        let _ = match self.target {
            Target::Stdout => std::io::stdout().lock().write_all(masked.as_bytes()),
            Target::Stderr => std::io::stderr().lock().write_all(masked.as_bytes()),
        };
    }
}

/// `text` with every secret value replaced by `[secret NAME]`.
pub(crate) fn mask(text: &str, secrets: &[(String, String)]) -> String {
    let mut masked = text.to_owned();
    for (name, value) in secrets {
        if !value.is_empty() && masked.contains(value.as_str()) {
            masked = masked.replace(value.as_str(), &format!("[secret {name}]"));
        }
    }
    masked
}

impl tokio::io::AsyncWrite for Redactor {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.line.extend_from_slice(buf);
        while let Some(newline) = self.line.iter().position(|b| *b == b'\n') {
            self.emit(newline + 1);
        }
        if self.line.len() >= MAX_LINE {
            let len = self.line.len();
            self.emit(len);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let len = self.line.len();
        self.emit(len);
        Poll::Ready(Ok(()))
    }
}

impl Drop for Redactor {
    fn drop(&mut self) {
        let len = self.line.len();
        if len > 0 {
            self.emit(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_by_name() {
        let secrets = vec![("API_SECRET".to_owned(), "hunter2".to_owned())];
        assert_eq!(
            mask("token hunter2 and hunter2\n", &secrets),
            "token [secret API_SECRET] and [secret API_SECRET]\n"
        );
        assert_eq!(mask("nothing here", &secrets), "nothing here");
    }
}
