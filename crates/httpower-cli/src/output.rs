//! Writing to the terminal. The only module allowed to print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;

/// Prints `message` on stderr as an error and returns the failure exit code.
pub(crate) fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Prints a line on stdout.
pub(crate) fn out(line: &str) {
    println!("{line}");
}

/// Prints a line on stderr.
pub(crate) fn note(line: &str) {
    eprintln!("{line}");
}

/// Writes raw bytes on stdout (a response body).
pub(crate) fn out_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    if !bytes.ends_with(b"\n") && !bytes.is_empty() {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()
}
