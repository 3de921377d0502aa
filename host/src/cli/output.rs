//! How every admin command prints: a readable table or one-line summary by default, the admin API's exact JSON with
//! `--json` (for scripts); results on stdout, errors and progress on stderr. Exit codes: 0 done, 1 failed (the
//! host refused, or could not be reached), 2 bad usage (clap's).

use serde_json::Value;

/// Prints `answer` as pretty JSON with `--json`, else as `human` prints it.
pub(crate) fn answer(json: bool, answer: &Value, human: impl FnOnce(&Value)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        human(answer);
    }
    Ok(())
}

/// A table whose columns are as wide as their widest cell (or header), so nothing misaligns whatever the data.
/// The last column is not padded.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    /// Columns aligned to the right (numbers).
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers; a header that starts with `>` is a right-aligned column (the `>` is dropped).
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        let right = headers.iter().map(|h| h.starts_with('>')).collect();
        let headers = headers.iter().map(|h| h.trim_start_matches('>')).collect();
        Self { headers, right, rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, the header first.
    pub(crate) fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (index, cell) in cells.enumerate().take(columns) {
                if index > 0 {
                    text.push_str("  ");
                }
                let pad = widths[index].saturating_sub(cell.chars().count());
                let last = index + 1 == columns;
                if self.right[index] {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    if !last {
                        text.push_str(&" ".repeat(pad));
                    }
                }
            }
            text.trim_end().to_owned()
        };
        let mut out = line(&mut self.headers.iter().copied());
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(&mut row.iter().map(String::as_str)));
        }
        out
    }

    pub(crate) fn print(&self) {
        println!("{}", self.render());
    }
}

/// A field as text: strings bare, `null` and missing as empty, anything else as JSON.
pub(crate) fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Milliseconds since the epoch as `2026-12-06 08:15:02` (UTC).
pub(crate) fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
}

/// At most `max` characters of `text`, with `…` when cut: errors in a table stay on one line.
pub(crate) fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A spinner on stderr with the time so far, while something slow runs (an upload and compile, a build); only when
/// stderr is a terminal, so scripts and logs get plain lines. It disappears when dropped.
pub(crate) struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    pub(crate) fn start(message: String) -> Self {
        use std::io::IsTerminal as _;
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Self(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_and_numbers_align_right() {
        let mut table = Table::new(&["NAME", ">COUNT", "BY"]);
        table.row(vec!["a".into(), "7".into(), "someone@example.com".into()]);
        table.row(vec!["longer-name".into(), "1234".into(), "x".into()]);
        assert_eq!(
            table.render(),
            "NAME         COUNT  BY\na                7  someone@example.com\nlonger-name   1234  x"
        );
        assert_eq!(short("a\nb", 10), "a b");
        assert_eq!(short("abcdefghijkl", 5), "abcd…");
    }
}
