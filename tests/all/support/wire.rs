//! Raw HTTP/1.1 on a TCP connection, for the tests that must see a response as it arrives: its head, then each chunk
//! of a chunked body as the host sends it (a client library would buffer or hide the chunk boundaries).

use super::Host;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::time::Duration;

/// A raw HTTP/1.1 connection to `host`, with `request` sent.
pub(crate) fn connect(host: &Host, request: &str) -> BufReader<std::net::TcpStream> {
    let address = host.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    stream.write_all(request.replace("{host}", address).as_bytes()).expect("send");
    BufReader::new(stream)
}

/// Reads a response head; returns its lines.
pub(crate) fn read_head(reader: &mut BufReader<std::net::TcpStream>) -> Vec<String> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read the head");
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            return head;
        }
        head.push(line);
    }
}

/// Reads one chunk of a chunked body; `None` at the last (empty) chunk. Fails on a cut connection.
pub(crate) fn read_chunk(reader: &mut BufReader<std::net::TcpStream>) -> Option<Vec<u8>> {
    let mut size = String::new();
    reader.read_line(&mut size).expect("read a chunk size");
    let size = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|_| panic!("not a chunk size: {size:?}"));
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).expect("read a chunk");
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}
