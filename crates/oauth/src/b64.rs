//! Small canonical base64 codecs (RFC 4648), private to the crate.
//!
//! Only what the protocol needs: base64url without padding for generated values (tokens, PKCE
//! challenges) and standard base64 with padding for HTTP Basic credentials (RFC 7617). Decoders
//! are strict: every decoded value has exactly one accepted encoding.

const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const STD_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The character for the low six bits of `v`.
fn sym(alphabet: &[u8; 64], v: u32) -> char {
    // `v & 63` is always a valid index; `get` keeps the no-indexing lint happy.
    alphabet
        .get((v & 63) as usize)
        .map_or('A', |&b| char::from(b))
}

fn encode(alphabet: &[u8; 64], data: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(sym(alphabet, n >> 18));
        out.push(sym(alphabet, n >> 12));
        if chunk.len() > 1 {
            out.push(sym(alphabet, n >> 6));
        } else if pad {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(sym(alphabet, n));
        } else if pad {
            out.push('=');
        }
    }
    out
}

/// base64url without padding (RFC 4648 §5, RFC 7515 §2).
pub(crate) fn encode_url(data: &[u8]) -> String {
    encode(URL_ALPHABET, data, false)
}

/// Standard base64 with padding (RFC 4648 §4). Used by tests to build Basic credentials.
#[cfg(test)]
pub(crate) fn encode_std(data: &[u8]) -> String {
    encode(STD_ALPHABET, data, true)
}

fn value(alphabet: &[u8; 64], c: u8) -> Option<u32> {
    alphabet.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Decodes unpadded symbols; `None` for a foreign byte, an impossible length or non-zero unused
/// trailing bits.
fn decode_unpadded(alphabet: &[u8; 64], s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    for chunk in s.chunks(4) {
        let mut n: u32 = 0;
        for &c in chunk {
            n = (n << 6) | value(alphabet, c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]),
            3 => {
                if n & 0b11 != 0 {
                    return None;
                }
                out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
            }
            2 => {
                if n & 0b1111 != 0 {
                    return None;
                }
                out.push((n >> 4) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Strict base64url without padding.
pub(crate) fn decode_url(s: &str) -> Option<Vec<u8>> {
    decode_unpadded(URL_ALPHABET, s.as_bytes())
}

/// Strict standard base64 with mandatory, correct padding.
pub(crate) fn decode_std_padded(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let body = b
        .strip_suffix(b"==")
        .or_else(|| b.strip_suffix(b"="))
        .unwrap_or(b);
    // After the padding is removed the remainder must be padding-free and of the right length.
    if body.contains(&b'=') {
        return None;
    }
    let pad = b.len() - body.len();
    match (pad, body.len() % 4) {
        (0, 0) | (1, 3) | (2, 2) => decode_unpadded(STD_ALPHABET, body),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (raw, enc) in vectors {
            assert_eq!(encode_std(raw), enc);
            assert_eq!(decode_std_padded(enc).as_deref(), Some(raw));
            let url = enc.trim_end_matches('=');
            assert_eq!(encode_url(raw), url);
            assert_eq!(decode_url(url).as_deref(), Some(raw));
        }
    }

    #[test]
    fn url_alphabet_differs() {
        assert_eq!(encode_url(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode_url("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_url("+/8"), None);
    }

    #[test]
    fn strictness() {
        assert_eq!(decode_std_padded("Zg="), None); // wrong padding
        assert_eq!(decode_std_padded("Zg"), None); // missing padding
        assert_eq!(decode_std_padded("Zh=="), None); // non-zero trailing bits
        assert_eq!(decode_std_padded("Z==="), None);
        assert_eq!(decode_std_padded("===="), None);
        assert_eq!(decode_std_padded("Zg==Zg=="), None);
        assert_eq!(decode_std_padded("Zm9 v"), None);
        assert_eq!(decode_url("Zg=="), None);
        assert_eq!(decode_url("Z"), None);
        assert_eq!(decode_url("Zh"), None);
    }
}
