//! Reading operator input with limits: nothing from outside is read unbounded.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

/// Reads at most `limit` bytes from a file; a larger file is an error, not a truncation.
pub fn read_file_bounded(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_bounded(file, limit).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads at most `limit` bytes; more is an error.
pub fn read_bounded(reader: impl Read, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut buffer = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut buffer)?;
    if buffer.len() > limit {
        bail!("input is larger than {limit} bytes");
    }
    Ok(buffer)
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Prints a JSON value on one line.
pub fn print_json(value: &serde_json::Value) {
    outln!("{value}");
}

/// The exit status of a process that wrote to a closed pipe (128 + SIGPIPE), as a shell
/// reports it for the tools that die of the signal.
pub const EXIT_CLOSED_PIPE: i32 = 141;

/// What a command is about to print that exists nowhere else in clear (a generated
/// password, a client secret), for the error if it cannot be printed.
static SECRET_IN_OUTPUT: std::sync::Mutex<Option<&'static str>> = std::sync::Mutex::new(None);

/// Says that the output from now on carries a one-time secret: if stdout fails, the error
/// says that it was lost and how to replace it (and the exit status is 2, not 141).
pub fn secret_follows(what_and_fix: &'static str) {
    if let Ok(mut slot) = SECRET_IN_OUTPUT.lock() {
        *slot = Some(what_and_fix);
    }
}

/// Writes to stdout. When the reader has gone away (`keyscope … | head`), the program ends
/// quietly with [`EXIT_CLOSED_PIPE`] instead of panicking as `println!` does. Any other write
/// error (a full disk), or a failure while a one-time secret is being printed, ends it with
/// a message on stderr and status 2.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        let secret = SECRET_IN_OUTPUT.lock().ok().and_then(|slot| *slot);
        if let Some(what_and_fix) = secret {
            eprintln!("keyscope: error: stdout failed ({error}) while printing {what_and_fix}");
            std::process::exit(2);
        }
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("keyscope: error: cannot write to stdout: {error}");
            std::process::exit(2);
        }
        std::process::exit(EXIT_CLOSED_PIPE);
    }
}

/// Writes to stdout for a server, which must not stop because nobody reads its output.
pub fn write_stdout_quiet(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).and_then(|()| stdout.flush())
}

/// `println!` for command output, through [`write_stdout`].
macro_rules! outln {
    () => {
        $crate::input::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::input::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `print!` for command output, through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::input::write_stdout(format_args!($($arg)*))
    };
}
pub(crate) use out;
