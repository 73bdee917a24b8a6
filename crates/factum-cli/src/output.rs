//! What the command prints: tables, event lines, times and sizes, and the
//! progress bars shown only to a person at a terminal.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets};
use factum_core::RecordedEvent;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::error::CliError;

/// Buffered standard output; a reader that went away (`| head`) ends the
/// command quietly (see [`Exit::PipeClosed`](crate::error::Exit)).
pub(crate) struct Out {
    writer: BufWriter<Stdout>,
    pub(crate) terminal: bool,
}

impl Out {
    pub(crate) fn new() -> Self {
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        Self {
            writer: BufWriter::with_capacity(64 * 1024, stdout),
            terminal,
        }
    }

    pub(crate) fn line(&mut self, text: impl std::fmt::Display) -> Result<(), CliError> {
        writeln!(self.writer, "{text}")?;
        Ok(())
    }

    /// Sends what is buffered: after each page of a live or long listing,
    /// so its first lines show at once.
    pub(crate) fn flush(&mut self) -> Result<(), CliError> {
        self.writer.flush()?;
        Ok(())
    }

    pub(crate) fn json(&mut self, value: &impl serde::Serialize) -> Result<(), CliError> {
        serde_json::to_writer(&mut self.writer, value)
            .map_err(|error| CliError::from(std::io::Error::from(error)))?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// The terminal's width, when printing to one.
    pub(crate) fn width(&self) -> Option<usize> {
        if !self.terminal {
            return None;
        }
        console::Term::stdout()
            .size_checked()
            .map(|(_, columns)| usize::from(columns))
    }
}

/// A table in the command's style.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

/// A time in tables: UTC, to the millisecond.
pub(crate) fn time(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.to_string())
}

/// A time in JSON: RFC 3339, full precision.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// A size in bytes, in binary units.
pub(crate) fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A count with thousands separators: `1,000,000`.
pub(crate) fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// The header of [`event_line`]s.
pub(crate) fn event_header(with_stream: bool) -> String {
    let stream = if with_stream {
        format!("{:<44} ", "STREAM")
    } else {
        String::new()
    };
    format!(
        "{:>9} {stream}{:>7}  {:<23}  {:<18} PAYLOAD",
        "POSITION", "VERSION", "OCCURRED AT (UTC)", "TYPE"
    )
}

/// One event on one line, for `events` and `tail`: the payload cut to the
/// terminal's width when printing to one.
pub(crate) fn event_line(event: &RecordedEvent, with_stream: bool, width: Option<usize>) -> String {
    let stream = if with_stream {
        format!(
            "{:<44} ",
            format!("{}/{}", event.aggregate_type(), event.aggregate_id())
        )
    } else {
        String::new()
    };
    let mut line = format!(
        "{:>9} {stream}{:>7}  {:<23}  {:<18} ",
        event.position,
        event.version,
        time(event.occurred_at),
        &*event.event_type
    );
    let payload = event.payload.as_str();
    match width {
        Some(width) if line.chars().count() + payload.chars().count() > width => {
            let room = width.saturating_sub(line.chars().count() + 1);
            line.extend(payload.chars().take(room));
            line.push('…');
        }
        _ => line.push_str(payload),
    }
    line
}

/// A progress bar on standard error with rate and time left, or a hidden
/// one when standard output is not a terminal (scripts, pipes, files).
pub(crate) fn progress(length: u64, what: &str, terminal: bool) -> ProgressBar {
    styled(
        length,
        terminal,
        &format!("{what} [{{bar:30}}] {{human_pos}}/{{human_len}} ({{per_sec}}, {{eta}} left) {{msg}}"),
    )
}

/// [`progress`] counting bytes (of a file being read).
pub(crate) fn progress_bytes(length: u64, what: &str, terminal: bool) -> ProgressBar {
    styled(
        length,
        terminal,
        &format!("{what} [{{bar:30}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left) {{msg}}"),
    )
}

fn styled(length: u64, terminal: bool, template: &str) -> ProgressBar {
    if !terminal || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// True when standard output is a terminal: progress bars show only then.
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use factum_core::{NewEvent, Payload, StreamId};

    use super::*;

    #[test]
    fn sizes_and_counts_read_like_a_person_writes_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(98 * 1024 * 1024 + 1024 * 900), "98.9 MiB");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(999), "999");
    }

    #[test]
    fn a_long_payload_is_cut_to_the_terminal() {
        let event = NewEvent::new(
            "incremented",
            Payload::parse(r#"{"amount":12345678901234567890}"#).unwrap(),
        )
        .recorded(StreamId::new("Counter", "1"), 2, 7);
        let full = event_line(&event, false, None);
        assert!(full.ends_with(r#"{"amount":12345678901234567890}"#), "{full}");
        let cut = event_line(&event, false, Some(70));
        assert_eq!(cut.chars().count(), 70, "{cut}");
        assert!(cut.ends_with('…'));
    }
}
