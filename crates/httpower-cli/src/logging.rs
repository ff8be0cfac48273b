//! Log lines on stderr, around the progress bar.

use std::io::{IsTerminal, Write};

use indicatif::ProgressBar;
use tracing_subscriber::fmt::MakeWriter;

/// Writes to stderr, hiding the progress bar while a line is written so the two do
/// not garble each other.
#[derive(Clone)]
pub(crate) struct StderrAroundProgress {
    progress: Option<ProgressBar>,
}

/// One line's writer.
pub(crate) struct LineWriter {
    progress: Option<ProgressBar>,
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.line);
        let write = || {
            // Nowhere to report a failed write to stderr.
            let _ = std::io::stderr().lock().write_all(&line);
        };
        match &self.progress {
            Some(progress) => progress.suspend(write),
            None => write(),
        }
    }
}

impl<'a> MakeWriter<'a> for StderrAroundProgress {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            progress: self.progress.clone(),
            line: Vec::new(),
        }
    }
}

/// Installs the process's log subscriber at `level` (`off` installs nothing).
pub(crate) fn install(level: &str, progress: Option<ProgressBar>) -> Result<(), String> {
    let level = match level.to_ascii_lowercase().as_str() {
        "off" => return Ok(()),
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        other => {
            return Err(format!(
                "--log: expected off, error, warn, info, debug or trace, found `{other}`"
            ))
        }
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(StderrAroundProgress { progress })
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|err| format!("cannot install the log subscriber: {err}"))
}
