//! Canonical base64 codecs.
//!
//! JOSE uses base64url without padding (RFC 7515 §2). Lenient decoders accept padding, whitespace,
//! the standard alphabet or non-zero unused bits, which gives one token several spellings; a
//! verifier that caches, logs or deduplicates by token text can then be fooled. Here every
//! decoded value has exactly one accepted encoding.
//!
//! The standard alphabet with padding is only used for the `x5c` member of a JWK (RFC 7517 §4.7).

use thiserror::Error;

/// Why a base64 string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Base64Error {
    /// A byte outside the alphabet (this includes `=`, `+`, `/` and whitespace for base64url).
    #[error("invalid base64 character at offset {0}")]
    InvalidCharacter(usize),
    /// A length that no encoding produces (one character left over).
    #[error("invalid base64 length")]
    InvalidLength,
    /// The unused low bits of the last character are not zero, so the encoding is not canonical.
    #[error("non-canonical base64: unused trailing bits are not zero")]
    NonCanonical,
    /// Padding is missing, misplaced or superfluous (standard alphabet only).
    #[error("invalid base64 padding")]
    InvalidPadding,
}

const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const STD_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const INVALID: u8 = 0xff;

// Indexing a 256-entry table with a u8, and a 64-entry table with a value masked to 6 bits,
// cannot go out of range.
#[allow(clippy::indexing_slicing)]
const fn reverse(alphabet: &[u8; 64]) -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
}

/// Decoding tables with each symbol's 6 bits already shifted to their place in a 24-bit
/// group, so that four symbols combine with three ORs. Bit 31 marks an invalid symbol.
struct Decoder {
    symbols: [u8; 256],
    shifted: [[u32; 256]; 4],
}

const INVALID_BIT: u32 = 1 << 31;

#[allow(clippy::indexing_slicing)] // u8 indexes into 256-entry tables
const fn decoder(alphabet: &[u8; 64]) -> Decoder {
    let symbols = reverse(alphabet);
    let mut shifted = [[INVALID_BIT; 256]; 4];
    let mut byte = 0;
    while byte < 256 {
        let value = symbols[byte];
        if value != INVALID {
            let value = value as u32;
            shifted[0][byte] = value << 18;
            shifted[1][byte] = value << 12;
            shifted[2][byte] = value << 6;
            shifted[3][byte] = value;
        }
        byte += 1;
    }
    Decoder { symbols, shifted }
}

static URL_DECODE: Decoder = decoder(URL_ALPHABET);
static STD_DECODE: Decoder = decoder(STD_ALPHABET);

/// Encodes bytes as base64url without padding.
pub fn encode_url(input: &[u8]) -> String {
    encode_with(input, URL_ALPHABET, false)
}

/// Encodes bytes as standard base64 with padding.
pub fn encode_std(input: &[u8]) -> String {
    encode_with(input, STD_ALPHABET, true)
}

#[allow(clippy::indexing_slicing)]
fn encode_with(input: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    let symbol = |index: u32| char::from(alphabet[(index & 0x3f) as usize]);
    for chunk in input.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(symbol(n >> 18));
        out.push(symbol(n >> 12));
        if chunk.len() > 1 {
            out.push(symbol(n >> 6));
        } else if pad {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(symbol(n));
        } else if pad {
            out.push('=');
        }
    }
    out
}

/// Decodes canonical base64url without padding.
pub fn decode_url(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    decode_with(input, &URL_DECODE)
}

/// Decodes canonical standard base64 with mandatory padding (as in `x5c`).
pub fn decode_std(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    if !input.len().is_multiple_of(4) {
        return Err(Base64Error::InvalidPadding);
    }
    let pad = input.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return Err(Base64Error::InvalidPadding);
    }
    let body = input
        .get(..input.len() - pad)
        .ok_or(Base64Error::InvalidPadding)?;
    let decoded = decode_with(body, &STD_DECODE)?;
    // The padding must be exactly what the body length implies.
    let expected_pad = (4 - body.len() % 4) % 4;
    if expected_pad != pad {
        return Err(Base64Error::InvalidPadding);
    }
    Ok(decoded)
}

/// Decodes four symbols at a time: a token is decoded on every validation, so this loop is on
/// the hot path.
#[allow(clippy::indexing_slicing)] // u8 indexes into 256-entry tables
fn decode_with(input: &[u8], decoder: &Decoder) -> Result<Vec<u8>, Base64Error> {
    if input.len() % 4 == 1 {
        return Err(Base64Error::InvalidLength);
    }
    let table = &decoder.symbols;
    let [t0, t1, t2, t3] = &decoder.shifted;
    let first_invalid = |input: &[u8], base: usize| {
        let offset = input
            .iter()
            .position(|&b| table[usize::from(b)] == INVALID)
            .unwrap_or(0);
        Base64Error::InvalidCharacter(base + offset)
    };
    let full_chunks = input.len() / 4;
    let tail_bytes = (input.len() % 4).saturating_sub(1);
    let mut out = Vec::with_capacity(full_chunks * 3 + tail_bytes);
    out.resize(full_chunks * 3, 0);
    let mut chunks = input.chunks_exact(4);
    for (index, (chunk, bytes)) in chunks.by_ref().zip(out.chunks_exact_mut(3)).enumerate() {
        let n = t0[usize::from(chunk[0])]
            | t1[usize::from(chunk[1])]
            | t2[usize::from(chunk[2])]
            | t3[usize::from(chunk[3])];
        if n & INVALID_BIT != 0 {
            return Err(first_invalid(chunk, index * 4));
        }
        bytes[0] = (n >> 16) as u8;
        bytes[1] = (n >> 8) as u8;
        bytes[2] = n as u8;
    }
    let rest = chunks.remainder();
    let base = input.len() - rest.len();
    let mut acc: u32 = 0;
    for &symbol in rest {
        let value = table[usize::from(symbol)];
        if value == INVALID {
            return Err(first_invalid(rest, base));
        }
        acc = (acc << 6) | u32::from(value);
    }
    match rest.len() {
        0 => {}
        2 => {
            // 12 bits: one byte and 4 unused bits.
            if acc & 0x0f != 0 {
                return Err(Base64Error::NonCanonical);
            }
            out.push((acc >> 4) as u8);
        }
        _ => {
            // 18 bits: two bytes and 2 unused bits.
            if acc & 0x03 != 0 {
                return Err(Base64Error::NonCanonical);
            }
            out.extend_from_slice(&((acc >> 2) as u16).to_be_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors_round_trip() {
        let cases: [(&[u8], &str, &str); 7] = [
            (b"", "", ""),
            (b"f", "Zg", "Zg=="),
            (b"fo", "Zm8", "Zm8="),
            (b"foo", "Zm9v", "Zm9v"),
            (b"foob", "Zm9vYg", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy", "Zm9vYmFy"),
        ];
        for (raw, url, std) in cases {
            assert_eq!(encode_url(raw), url);
            assert_eq!(encode_std(raw), std);
            assert_eq!(decode_url(url.as_bytes()).as_deref(), Ok(raw));
            assert_eq!(decode_std(std.as_bytes()).as_deref(), Ok(raw));
        }
    }

    #[test]
    fn rejects_padding_whitespace_and_std_alphabet_in_url_mode() {
        assert_eq!(decode_url(b"Zg=="), Err(Base64Error::InvalidCharacter(2)));
        assert_eq!(decode_url(b"Zm 9"), Err(Base64Error::InvalidCharacter(2)));
        assert_eq!(decode_url(b"a+b/"), Err(Base64Error::InvalidCharacter(1)));
        assert_eq!(decode_url(b"Zm9vY"), Err(Base64Error::InvalidLength));
    }

    #[test]
    fn rejects_nonzero_unused_bits() {
        // "Zh" decodes to "f" as well under a lenient decoder.
        assert_eq!(decode_url(b"Zh"), Err(Base64Error::NonCanonical));
        assert_eq!(decode_url(b"Zm9"), Err(Base64Error::NonCanonical));
        assert_eq!(decode_std(b"Zh=="), Err(Base64Error::NonCanonical));
    }

    #[test]
    fn std_padding_must_match_length() {
        assert_eq!(decode_std(b"Zg="), Err(Base64Error::InvalidPadding));
        assert_eq!(decode_std(b"Zm8=="), Err(Base64Error::InvalidPadding));
        assert_eq!(decode_std(b"Zm9v===="), Err(Base64Error::InvalidPadding));
        assert_eq!(decode_std(b"Zg=a"), Err(Base64Error::InvalidCharacter(2)));
    }

    proptest! {
        #[test]
        fn url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let text = encode_url(&bytes);
            prop_assert_eq!(decode_url(text.as_bytes()), Ok(bytes));
        }

        #[test]
        fn decoding_is_injective(text in "[A-Za-z0-9_-]{0,40}") {
            // Whatever decodes must re-encode to the very same text.
            if let Ok(bytes) = decode_url(text.as_bytes()) {
                prop_assert_eq!(encode_url(&bytes), text);
            }
        }
    }
}
