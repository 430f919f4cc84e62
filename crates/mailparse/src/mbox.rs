//! Splitting mbox files (mboxo and mboxrd) into raw RFC 5322 messages.
//!
//! A message starts at a line beginning with `From ` (the separator line)
//! that is at the start of the file, directly follows another separator
//! line, or follows an empty line. The separator line itself is dropped,
//! as is the single empty line that precedes the next separator (and a
//! single empty line at the end of the file). Lines matching `^>+From `
//! lose one `>` (mboxrd unquoting; for mboxo files this also unquotes the
//! `>From ` lines the writer produced). LF and CRLF line endings are both
//! handled and kept as they are in the messages.

/// Why [`split_mbox`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MboxError {
    /// The input does not start (after optional empty lines) with a
    /// `From ` separator line, so it is not an mbox file (it may be a
    /// single RFC 5322 message instead).
    #[error("input is not an mbox file: it does not start with a \"From \" line")]
    NotMbox,
}

/// Iterates over the lines of `data`, each including its `\n` (the last
/// line may lack one).
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split_inclusive(|&b| b == b'\n')
}

/// Whether `line` (with its line ending) is empty.
fn is_blank(line: &[u8]) -> bool {
    matches!(line, b"\n" | b"\r\n" | b"\r" | b"")
}

fn is_separator(line: &[u8]) -> bool {
    line.starts_with(b"From ")
}

/// The first line of `data` that is not empty, if any.
fn first_content_line(data: &[u8]) -> Option<&[u8]> {
    lines(data).find(|l| !is_blank(l))
}

/// Whether `data` looks like an mbox file: its first non-empty line starts
/// with `From ` (an RFC 5322 message starts with a header field, whose
/// name is followed by a colon, never by a space).
pub fn looks_like_mbox(data: &[u8]) -> bool {
    first_content_line(data).is_some_and(is_separator)
}

/// Removes one `>` from a line matching `^>+From `.
fn unquote(line: &[u8]) -> &[u8] {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    match (line.get(quotes..), line.get(1..)) {
        (Some(rest), Some(unquoted)) if quotes > 0 && rest.starts_with(b"From ") => unquoted,
        _ => line,
    }
}

/// Splits an mbox file into the raw messages it holds, in order.
///
/// See the [module documentation](self) for the exact rules. Messages
/// that are empty (a separator directly followed by another separator, or
/// by an empty line and another separator) are skipped. Input whose first
/// non-empty line is not a `From ` line is refused with
/// [`MboxError::NotMbox`]. Runs in time linear in the input and never
/// panics.
pub fn split_mbox(data: &[u8]) -> Result<Vec<Vec<u8>>, MboxError> {
    if !looks_like_mbox(data) {
        return Err(MboxError::NotMbox);
    }
    let mut messages = Vec::new();
    // `None` until the first separator has been seen.
    let mut current: Option<Vec<u8>> = None;
    // Length of `current` before the last line, when that line was empty.
    let mut blank_at: Option<usize> = None;
    // Whether the previous line was a separator.
    let mut after_separator = false;

    for line in lines(data) {
        let Some(msg) = current.as_mut() else {
            // Leading empty lines before the first separator.
            if is_separator(line) {
                current = Some(Vec::new());
                after_separator = true;
            }
            continue;
        };
        let starts_message = is_separator(line) && (after_separator || blank_at.is_some());
        if starts_message {
            let mut done = std::mem::take(msg);
            if let Some(len) = blank_at {
                done.truncate(len);
            }
            if !done.is_empty() {
                messages.push(done);
            }
            blank_at = None;
            after_separator = true;
            continue;
        }
        after_separator = false;
        blank_at = if is_blank(line) {
            Some(msg.len())
        } else {
            None
        };
        msg.extend_from_slice(unquote(line));
    }
    if let Some(mut last) = current {
        if let Some(len) = blank_at {
            last.truncate(len);
        }
        if !last.is_empty() {
            messages.push(last);
        }
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_mbox(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|m| String::from_utf8(m).unwrap())
            .collect()
    }

    #[test]
    fn two_messages_lf() {
        let mbox = "From a@b Thu Jan  1 00:00:00 2026\nSubject: one\n\nbody one\n\n\
                    From c@d Thu Jan  1 00:00:01 2026\nSubject: two\n\nbody two\n\n";
        assert_eq!(
            split(mbox),
            ["Subject: one\n\nbody one\n", "Subject: two\n\nbody two\n"]
        );
    }

    #[test]
    fn two_messages_crlf() {
        let mbox = "From a@b Thu Jan  1 00:00:00 2026\r\nSubject: one\r\n\r\nbody one\r\n\r\n\
                    From c@d Thu Jan  1 00:00:01 2026\r\nSubject: two\r\n\r\nbody two\r\n";
        assert_eq!(
            split(mbox),
            [
                "Subject: one\r\n\r\nbody one\r\n",
                "Subject: two\r\n\r\nbody two\r\n"
            ]
        );
    }

    #[test]
    fn only_one_empty_line_is_removed() {
        let mbox = "From a\nS: 1\n\nbody\n\n\n\nFrom b\nS: 2\n\nx";
        assert_eq!(split(mbox), ["S: 1\n\nbody\n\n\n", "S: 2\n\nx"]);
    }

    #[test]
    fn from_line_not_after_blank_is_content() {
        let mbox = "From a\nS: 1\n\nline\nFrom here on, text\n";
        assert_eq!(split(mbox), ["S: 1\n\nline\nFrom here on, text\n"]);
    }

    #[test]
    fn mboxrd_unquoting() {
        let mbox = "From a\nS: 1\n\n>From quoted\n>>From twice\n> From not\n>Fromage\nFrom x\n";
        assert_eq!(
            split(mbox),
            ["S: 1\n\nFrom quoted\n>From twice\n> From not\n>Fromage\nFrom x\n"]
        );
    }

    #[test]
    fn empty_messages_are_skipped() {
        let mbox = "From a\nFrom b\n\nFrom c\nS: 1\n\nbody\n";
        assert_eq!(split(mbox), ["S: 1\n\nbody\n"]);
        assert!(split("From a\n").is_empty());
        assert!(split("From a\n\n").is_empty());
    }

    #[test]
    fn leading_blank_lines_are_tolerated() {
        let mbox = "\n\r\nFrom a\nS: 1\n\nbody\n";
        assert_eq!(split(mbox), ["S: 1\n\nbody\n"]);
        assert!(looks_like_mbox(mbox.as_bytes()));
    }

    #[test]
    fn not_mbox() {
        for input in [
            "",
            "\n\n",
            "From: a@b\nSubject: x\n\nbody\n",
            "Subject: x\n\nFrom a\n",
            "Fro",
        ] {
            assert_eq!(split_mbox(input.as_bytes()), Err(MboxError::NotMbox));
            assert!(!looks_like_mbox(input.as_bytes()));
        }
    }

    #[test]
    fn message_without_final_newline() {
        assert_eq!(split("From a\nS: 1\n\nbody"), ["S: 1\n\nbody"]);
    }

    #[test]
    fn split_messages_parse() {
        let mbox =
            "From a\nFrom: x@y\nSubject: one\n\nhi\n\nFrom b\nFrom: z@w\nSubject: two\n\nyo\n";
        let msgs = split_mbox(mbox.as_bytes()).unwrap();
        let subjects: Vec<_> = msgs
            .iter()
            .map(|m| {
                crate::parse_message(m, &crate::Limits::default())
                    .unwrap()
                    .subject
                    .unwrap()
            })
            .collect();
        assert_eq!(subjects, ["one", "two"]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let pieces: [&[u8]; 8] = [
            b"From ", b"\n", b"\r\n", b">", b">From ", b"x", b"\r", b"\xff",
        ];
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..2000 {
            let mut data = b"From a\n".to_vec();
            for _ in 0..(seed % 40) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                data.extend_from_slice(pieces[(seed >> 16) as usize % pieces.len()]);
            }
            let msgs = split_mbox(&data).unwrap();
            let total: usize = msgs.iter().map(Vec::len).sum();
            assert!(total <= data.len());
            assert!(msgs.iter().all(|m| !m.is_empty()));
        }
    }
}
