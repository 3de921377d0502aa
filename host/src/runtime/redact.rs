//! Secrets never leave a function in what it says: its output ([`super::output`]), its error text, its
//! dead-letter reasons. Each secret value is replaced by `[secret NAME]`.

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

/// `bytes` with every secret value replaced by `[secret NAME]`, byte for byte (output need not be UTF-8).
pub(crate) fn mask_bytes(bytes: &[u8], secrets: &[(String, String)]) -> Vec<u8> {
    let mut masked = bytes.to_vec();
    for (name, value) in secrets {
        let value = value.as_bytes();
        if value.is_empty() || masked.len() < value.len() {
            continue;
        }
        let replacement = format!("[secret {name}]").into_bytes();
        let mut out = Vec::with_capacity(masked.len());
        let mut at = 0;
        while at < masked.len() {
            if masked[at..].starts_with(value) {
                out.extend_from_slice(&replacement);
                at += value.len();
            } else {
                out.push(masked[at]);
                at += 1;
            }
        }
        masked = out;
    }
    masked
}

/// Truncates `text` to at most `max` bytes (on a character boundary), saying how much was cut.
pub(crate) fn truncate(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [truncated: {} more bytes]", &text[..end], text.len() - end)
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
        assert_eq!(mask_bytes(b"\xffhunter2\xfe", &secrets), b"\xff[secret API_SECRET]\xfe");
    }

    #[test]
    fn truncation_keeps_a_character_boundary_and_says_so() {
        assert_eq!(truncate("short".into(), 10), "short");
        assert_eq!(truncate("ééé".into(), 3), "é... [truncated: 4 more bytes]");
    }
}
