//! Printing results: aligned `label  value` lines for people, JSON for programs.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints one record: `rows` as aligned text, or `json` as one JSON document.
    pub fn record(&self, rows: &[(&str, String)], json: Value) {
        if self.json {
            println!("{json}");
            return;
        }
        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        for (label, value) in rows {
            let mut lines = value.lines();
            println!("{label:<width$}  {}", lines.next().unwrap_or(""));
            for line in lines {
                println!("{:<width$}  {line}", "");
            }
        }
    }

    /// Prints `rows` as columns aligned under `headers` for people, or `json` as one JSON
    /// document. The last column is not padded.
    pub fn table(&self, headers: &[&str], rows: &[Vec<String>], json: Value) {
        if self.json {
            println!("{json}");
            return;
        }
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let text: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if i == last {
                        cell.to_string()
                    } else {
                        format!("{cell:<width$}", width = widths[i])
                    }
                })
                .collect();
            println!("{}", text.join("  ").trim_end());
        };
        line(headers.to_vec());
        for row in rows {
            line(row.iter().map(String::as_str).collect());
        }
    }

    /// Prints one line of a stream: `text` for people, `json` as one JSON line.
    pub fn line(&self, text: &str, json: Value) {
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
    }
}

/// `2026-11-24T13:00:00.123Z` for milliseconds since the Unix epoch.
pub(super) fn timestamp(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// `1h 2m 3s` for a number of seconds.
pub(super) fn duration(seconds: u64) -> String {
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}
