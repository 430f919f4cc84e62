//! Byte-level plumbing: counting what was read, decoding UTF-16, bounded lines and CSV
//! records, and a per-element byte budget for the streaming JSON reader.

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

/// Counts the bytes read from the source (for progress and [`super::ImportStats::bytes`]).
pub(super) struct Counting<R> {
    pub(super) inner: R,
    pub(super) count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// Reads up to `limit` bytes (fewer only at the end of the input).
pub(super) fn read_prefix(reader: &mut impl Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(limit.min(64 * 1024));
    reader.take(limit as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

/// Decodes UTF-16 (after its byte order mark) into UTF-8; unpaired surrogates and a final odd
/// byte become U+FFFD.
pub(super) struct Utf16<R> {
    inner: R,
    big_endian: bool,
    raw: Vec<u8>,
    /// An odd byte left over from the previous raw read.
    carry: Option<u8>,
    /// A high surrogate waiting for its low half.
    high: Option<u16>,
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<R: Read> Utf16<R> {
    pub(super) fn new(inner: R, big_endian: bool) -> Self {
        Utf16 {
            inner,
            big_endian,
            raw: vec![0; 16 * 1024],
            carry: None,
            high: None,
            out: Vec::new(),
            out_pos: 0,
            eof: false,
        }
    }

    fn push_char(&mut self, c: char) {
        let mut tmp = [0u8; 4];
        self.out
            .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
    }

    fn push_unit(&mut self, unit: u16) {
        match (self.high.take(), unit) {
            (Some(high), 0xDC00..=0xDFFF) => {
                let code =
                    0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                self.push_char(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            (previous, 0xD800..=0xDBFF) => {
                if previous.is_some() {
                    self.push_char(char::REPLACEMENT_CHARACTER);
                }
                self.high = Some(unit);
            }
            (previous, _) => {
                if previous.is_some() {
                    self.push_char(char::REPLACEMENT_CHARACTER);
                }
                let c = char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER);
                self.push_char(c);
            }
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out_pos = 0;
        while self.out.is_empty() && !self.eof {
            let mut raw = std::mem::take(&mut self.raw);
            let n = self.inner.read(&mut raw);
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.raw = raw;
                    return Err(e);
                }
            };
            if n == 0 {
                self.eof = true;
                let odd = self.carry.take().is_some();
                let unpaired = self.high.take().is_some();
                if odd || unpaired {
                    self.push_char(char::REPLACEMENT_CHARACTER);
                }
            }
            let mut bytes = raw.get(..n).unwrap_or_default().iter().copied();
            loop {
                let first = match self.carry.take() {
                    Some(b) => b,
                    None => match bytes.next() {
                        Some(b) => b,
                        None => break,
                    },
                };
                let Some(second) = bytes.next() else {
                    self.carry = Some(first);
                    break;
                };
                let unit = if self.big_endian {
                    u16::from_be_bytes([first, second])
                } else {
                    u16::from_le_bytes([first, second])
                };
                self.push_unit(unit);
            }
            self.raw = raw;
        }
        Ok(())
    }
}

impl<R: Read> Read for Utf16<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_pos >= self.out.len() {
            self.refill()?;
        }
        let available = self.out.get(self.out_pos..).unwrap_or_default();
        let n = available.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), available.get(..n)) {
            to.copy_from_slice(from);
        }
        self.out_pos += n;
        Ok(n)
    }
}

/// A read budget shared between the streaming JSON reader and its callbacks: the reader fails
/// once more than the budget was read since the last [`Budget::reset`].
#[derive(Clone)]
pub(super) struct Budget {
    left: Rc<Cell<u64>>,
    exceeded: Rc<Cell<bool>>,
    limit: u64,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Self {
        Budget {
            left: Rc::new(Cell::new(limit)),
            exceeded: Rc::new(Cell::new(false)),
            limit,
        }
    }

    pub(super) fn reset(&self) {
        self.left.set(self.limit);
    }

    pub(super) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }
}

/// A reader that fails (with `exceeded` set) when its [`Budget`] runs out.
pub(super) struct Limited<R> {
    pub(super) inner: R,
    pub(super) budget: Budget,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.left.get();
        if left == 0 {
            self.budget.exceeded.set(true);
            return Err(io::Error::other("element too large"));
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(buf.get_mut(..want).unwrap_or_default())?;
        self.budget.left.set(left - n as u64);
        Ok(n)
    }
}

/// One physical line, as [`Lines::next_line`] read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LineInfo {
    /// 1-based line number.
    pub(super) number: u64,
    /// Longer than the limit: the buffer holds nothing and the rest of the line was skipped.
    pub(super) too_long: bool,
    /// Only white space (or the zero bytes of preallocated space).
    pub(super) blank: bool,
}

/// Physical lines of at most a given length, read from a [`BufRead`] without ever holding
/// more than that length in memory.
pub(super) struct Lines<R> {
    inner: R,
    number: u64,
}

fn is_blank_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0 | 0x0b | 0x0c)
}

impl<R: BufRead> Lines<R> {
    pub(super) fn new(inner: R) -> Self {
        Lines { inner, number: 0 }
    }

    /// Reads the next line (without its `\n`) into `buf`, which is cleared first. `None` at
    /// the end of the input.
    pub(super) fn next_line(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<Option<LineInfo>> {
        buf.clear();
        let mut any = false;
        let mut too_long = false;
        let mut blank = true;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (chunk, used, end) = match memchr::memchr(b'\n', available) {
                Some(i) => (available.get(..i).unwrap_or_default(), i + 1, true),
                None => (available, available.len(), false),
            };
            if blank && !chunk.iter().all(|b| is_blank_byte(*b)) {
                blank = false;
            }
            if !too_long {
                if buf.len() + chunk.len() <= max {
                    buf.extend_from_slice(chunk);
                } else {
                    too_long = true;
                    buf.clear();
                }
            }
            self.inner.consume(used);
            if end {
                break;
            }
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        self.number += 1;
        Ok(Some(LineInfo {
            number: self.number,
            too_long,
            blank,
        }))
    }

    /// Reads the next CSV record (one or more physical lines, joined while a quoted field is
    /// open) into `buf`. The returned line number is the record's first line; `too_long` when
    /// the record would exceed `max` bytes (reading then resumes at the next physical line).
    pub(super) fn next_csv_record(
        &mut self,
        buf: &mut Vec<u8>,
        line: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<Option<LineInfo>> {
        buf.clear();
        let mut first: Option<LineInfo> = None;
        let mut quotes = 0usize;
        let mut blank = true;
        loop {
            let room = max.saturating_sub(buf.len());
            let Some(info) = self.next_line(line, room)? else {
                break;
            };
            let start = *first.get_or_insert(info);
            blank &= info.blank;
            if info.too_long {
                buf.clear();
                return Ok(Some(LineInfo {
                    number: start.number,
                    too_long: true,
                    blank: false,
                }));
            }
            if info.number != start.number {
                buf.push(b'\n');
            }
            buf.extend_from_slice(line);
            quotes += memchr::memchr_iter(b'"', line).count();
            if quotes.is_multiple_of(2) {
                break;
            }
            if buf.len() >= max {
                buf.clear();
                return Ok(Some(LineInfo {
                    number: start.number,
                    too_long: true,
                    blank: false,
                }));
            }
        }
        Ok(first.map(|f| LineInfo {
            number: f.number,
            too_long: false,
            blank,
        }))
    }
}

/// Skips white space (and zero bytes); the next byte, without consuming it, or `None` at the
/// end of the input.
pub(super) fn skip_blank(reader: &mut impl BufRead) -> io::Result<Option<u8>> {
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(None);
        }
        match available.iter().position(|b| !is_blank_byte(*b)) {
            Some(i) => {
                let next = available.get(i).copied();
                reader.consume(i);
                return Ok(next);
            }
            None => {
                let n = available.len();
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    fn lines(input: &[u8], max: usize, capacity: usize) -> Vec<(u64, bool, bool, String)> {
        let mut reader = Lines::new(BufReader::with_capacity(capacity, Cursor::new(input)));
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(info) = reader.next_line(&mut buf, max).unwrap() {
            out.push((
                info.number,
                info.too_long,
                info.blank,
                String::from_utf8_lossy(&buf).into_owned(),
            ));
        }
        out
    }

    #[test]
    fn bounded_lines() {
        for capacity in [1, 3, 64] {
            let got = lines(b"ab\r\n\n0123456789\nxyz\n\0\0\0\nlast", 5, capacity);
            assert_eq!(
                got,
                vec![
                    (1, false, false, "ab".into()),
                    (2, false, true, String::new()),
                    (3, true, false, String::new()),
                    (4, false, false, "xyz".into()),
                    (5, false, true, "\0\0\0".into()),
                    (6, false, false, "last".into()),
                ],
                "capacity {capacity}"
            );
        }
        assert!(lines(b"", 5, 8).is_empty());
        assert_eq!(lines(b"\n", 5, 8), vec![(1, false, true, String::new())]);
    }

    #[test]
    fn csv_records_join_quoted_newlines() {
        let input = b"a,b\n1,\"x\ny\"\"\nz\"\n2,w\n3,\"0123456789012345\n4,v\n";
        let mut reader = Lines::new(BufReader::with_capacity(4, Cursor::new(&input[..])));
        let (mut buf, mut line) = (Vec::new(), Vec::new());
        let mut got = Vec::new();
        while let Some(info) = reader.next_csv_record(&mut buf, &mut line, 16).unwrap() {
            got.push((
                info.number,
                info.too_long,
                String::from_utf8_lossy(&buf).into_owned(),
            ));
        }
        assert_eq!(
            got,
            vec![
                (1, false, "a,b".into()),
                (2, false, "1,\"x\ny\"\"\nz\"".into()),
                (5, false, "2,w".into()),
                (6, true, String::new()),
                (7, false, "4,v".into()),
            ]
        );
    }

    #[test]
    fn utf16_decodes() {
        let text = "{\"a\":\"é😀\"}\n";
        for big_endian in [false, true] {
            let raw: Vec<u8> = text
                .encode_utf16()
                .flat_map(|u| {
                    if big_endian {
                        u.to_be_bytes()
                    } else {
                        u.to_le_bytes()
                    }
                })
                .collect();
            let mut out = String::new();
            Utf16::new(Cursor::new(raw), big_endian)
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, text);
        }
        let mut out = String::new();
        Utf16::new(Cursor::new(vec![0x00, 0xD8, b'a', 0, 7]), false)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "\u{FFFD}a\u{FFFD}");
    }

    #[test]
    fn budget_limits() {
        let budget = Budget::new(4);
        let mut limited = Limited {
            inner: Cursor::new(b"0123456789".to_vec()),
            budget: budget.clone(),
        };
        let mut buf = [0u8; 3];
        assert_eq!(limited.read(&mut buf).unwrap(), 3);
        assert_eq!(limited.read(&mut buf).unwrap(), 1);
        assert!(limited.read(&mut buf).is_err());
        assert!(budget.exceeded());
        budget.reset();
        assert_eq!(limited.read(&mut buf).unwrap(), 3);
    }
}
