//! The master key: 32 random bytes from `KEYSCOPE_MASTER_KEY` or `<data_dir>/master.key`,
//! never from the database, held only in zeroizing memory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::hkdf;
use keyscope_jose::b64;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{CustodyError, MasterKeyFormat};

/// The environment variable that holds the master key (base64url or standard base64 of 32
/// bytes). When set and non-empty it wins over the file.
pub const MASTER_KEY_ENV: &str = "KEYSCOPE_MASTER_KEY";

/// The master key file's name inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

/// The master key's length in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// Text longer than this is not an encoding of 32 bytes (43 or 44 characters plus whitespace),
/// and a file is not read past it.
const MAX_TEXT_LEN: usize = 256;

/// The HKDF-SHA256 salt for every key derived from the master key. A constant, so that each
/// purpose is told apart by its `info` label alone (the master key is uniformly random, so a
/// constant salt costs nothing; it is non-empty because FIPS mode wants one).
const HKDF_SALT: &[u8] = b"keyscope master key v1";

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `KEYSCOPE_MASTER_KEY`.
    Environment,
    /// An existing file.
    File(PathBuf),
    /// A file this call created (first start).
    Created(PathBuf),
}

/// The key-encryption master key: 32 bytes in a heap buffer that is wiped when dropped.
///
/// It has no `Display`, `Serialize` or `Clone`, and its `Debug` prints `MasterKey(<redacted>)`.
pub struct MasterKey {
    /// Always [`MASTER_KEY_LEN`] bytes. Boxed so that moving a `MasterKey` never copies the key.
    bytes: Zeroizing<Box<[u8]>>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// An HKDF output length.
struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

impl MasterKey {
    /// Loads the master key: `KEYSCOPE_MASTER_KEY` if it is set and non-empty, otherwise
    /// `<data_dir>/master.key`, which is created (mode 0600, in a data directory created with
    /// mode 0700 if missing) on first start.
    ///
    /// Creation is race-safe: the key is written and fsynced under a unique temporary name
    /// opened with `O_CREAT | O_EXCL`, then published with `link(2)`, which never replaces an
    /// existing file. A process that loses the race loads the winner's key, and a crash never
    /// leaves a partly written `master.key`.
    pub fn load_or_create(data_dir: &Path) -> Result<(MasterKey, MasterKeySource), CustodyError> {
        if let Some(value) = std::env::var_os(MASTER_KEY_ENV)
            && !value.is_empty()
        {
            let value = match value.into_string() {
                Ok(text) => Zeroizing::new(text),
                Err(raw) => {
                    raw.into_encoded_bytes().zeroize();
                    return Err(CustodyError::MasterKeyEnv(MasterKeyFormat::NotText));
                }
            };
            return MasterKey::from_env_value(&value)
                .map(|key| (key, MasterKeySource::Environment));
        }

        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| CustodyError::io("create the data directory", data_dir, e))?;
        let path = data_dir.join(MASTER_KEY_FILE);
        match MasterKey::from_file(&path) {
            Ok(key) => return Ok((key, MasterKeySource::File(path))),
            Err(CustodyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(other) => return Err(other),
        }
        let key = MasterKey::generate()?;
        if key.publish(data_dir, &path)? {
            Ok((key, MasterKeySource::Created(path)))
        } else {
            // Another process created the file between our look and our link: use its key.
            drop(key);
            MasterKey::from_file(&path).map(|key| (key, MasterKeySource::File(path)))
        }
    }

    /// Parses the value of `KEYSCOPE_MASTER_KEY`: base64url without padding or standard
    /// base64 with padding, of exactly 32 bytes; surrounding whitespace is ignored. Errors
    /// never repeat the value.
    pub fn from_env_value(value: &str) -> Result<MasterKey, CustodyError> {
        parse_text(value.as_bytes()).map_err(CustodyError::MasterKeyEnv)
    }

    /// Reads a master key file. The file must be a regular file whose mode grants nothing to
    /// group or others, holding the key in the same encodings as the environment variable.
    pub fn from_file(path: &Path) -> Result<MasterKey, CustodyError> {
        // Look before opening so that a FIFO or device is refused instead of blocking the open;
        // the opened file is checked again below.
        let before = fs::metadata(path).map_err(|e| CustodyError::io("read", path, e))?;
        if !before.is_file() {
            return Err(CustodyError::MasterKeyNotAFile {
                path: path.to_path_buf(),
            });
        }
        let file = File::open(path).map_err(|e| CustodyError::io("open", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| CustodyError::io("read", path, e))?;
        if !meta.is_file() {
            return Err(CustodyError::MasterKeyNotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CustodyError::MasterKeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        // Capacity for everything `take` can return, so the buffer never reallocates (which
        // would leave an unwiped copy behind).
        let mut text = Zeroizing::new(Vec::with_capacity(MAX_TEXT_LEN + 1));
        let limit = u64::try_from(MAX_TEXT_LEN + 1).unwrap_or(u64::MAX);
        file.take(limit)
            .read_to_end(&mut text)
            .map_err(|e| CustodyError::io("read", path, e))?;
        parse_text(&text).map_err(|why| CustodyError::MasterKeyFile {
            path: path.to_path_buf(),
            why,
        })
    }

    /// Wraps 32 bytes; the argument's copy is wiped.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> MasterKey {
        let mut bytes = bytes;
        let key = MasterKey {
            bytes: Zeroizing::new(Box::from(&bytes[..])),
        };
        bytes.zeroize();
        key
    }

    /// 32 fresh bytes from the system random number generator.
    pub fn generate() -> Result<MasterKey, CustodyError> {
        let mut bytes: Zeroizing<Box<[u8]>> =
            Zeroizing::new(vec![0u8; MASTER_KEY_LEN].into_boxed_slice());
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CustodyError::Random)?;
        Ok(MasterKey { bytes })
    }

    /// Derives `out.len()` bytes for the purpose named by `info` with HKDF-SHA256 (salt
    /// [`HKDF_SALT`]). Each purpose must use its own `info` label.
    pub(crate) fn derive(&self, info: &[u8], out: &mut [u8]) -> Result<(), CustodyError> {
        let info = [info];
        hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT)
            .extract(&self.bytes)
            .expand(&info, OkmLen(out.len()))
            .and_then(|okm| okm.fill(out))
            .map_err(|_| CustodyError::Crypto("deriving a key from the master key"))
    }

    /// Writes the key to a fresh temporary file and links it to `path`. `Ok(false)` when
    /// `path` already exists (another process won the race).
    fn publish(&self, dir: &Path, path: &Path) -> Result<bool, CustodyError> {
        let mut nonce = [0u8; 8];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CustodyError::Random)?;
        let tmp = TempFile(dir.join(format!(
            ".{MASTER_KEY_FILE}.{}.{}.tmp",
            std::process::id(),
            u64::from_be_bytes(nonce)
        )));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp.0)
            .map_err(|e| CustodyError::io("create", &tmp.0, e))?;
        let text = Zeroizing::new(b64::encode_url(&self.bytes));
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| CustodyError::io("write", &tmp.0, e))?;
        drop(file);
        match fs::hard_link(&tmp.0, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(CustodyError::io("create", path, e)),
        }
        drop(tmp);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CustodyError::io("sync", dir, e))?;
        Ok(true)
    }
}

/// A temporary file that is removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Decodes the textual form of a master key. Every intermediate buffer is zeroizing.
fn parse_text(text: &[u8]) -> Result<MasterKey, MasterKeyFormat> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(MasterKeyFormat::Empty);
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(MasterKeyFormat::TooLong);
    }
    let decoded = b64::decode_url(text)
        .or_else(|_| b64::decode_std(text))
        .map(Zeroizing::new)
        .map_err(|_| MasterKeyFormat::NotBase64)?;
    if decoded.len() != MASTER_KEY_LEN {
        return Err(MasterKeyFormat::WrongLength(decoded.len()));
    }
    Ok(MasterKey {
        bytes: Zeroizing::new(Box::from(decoded.as_slice())),
    })
}

#[cfg(test)]
impl MasterKey {
    pub(crate) fn bytes_for_test(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn first_start_creates_a_0600_file_and_later_starts_reload_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data").join("nested");
        let (created, source) = MasterKey::load_or_create(&data).unwrap();
        let path = data.join(MASTER_KEY_FILE);
        // Only meaningful when the test environment does not set the variable.
        if std::env::var_os(MASTER_KEY_ENV).is_some_and(|v| !v.is_empty()) {
            assert_eq!(source, MasterKeySource::Environment);
            return;
        }
        assert_eq!(source, MasterKeySource::Created(path.clone()));
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&data) & 0o077, 0);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 44);
        assert!(text.ends_with('\n'));
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&data).unwrap().count(), 1);

        let (again, source) = MasterKey::load_or_create(&data).unwrap();
        assert_eq!(source, MasterKeySource::File(path.clone()));
        assert_eq!(again.bytes_for_test(), created.bytes_for_test());
        let direct = MasterKey::from_file(&path).unwrap();
        assert_eq!(direct.bytes_for_test(), created.bytes_for_test());
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var_os(MASTER_KEY_ENV).is_some_and(|v| !v.is_empty()) {
            return;
        }
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| MasterKey::load_or_create(dir.path()).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().0.bytes_for_test().to_vec())
                .collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn group_or_other_permissions_are_refused_with_a_chmod_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        fs::write(&path, format!("{}\n", b64::encode_url(&[7u8; 32]))).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::from_file(&path).unwrap_err();
            assert!(matches!(err, CustodyError::MasterKeyPermissions { mode: m, .. } if m == mode));
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(text.contains("chmod 600"), "{text}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        let key = MasterKey::from_file(&path).unwrap();
        assert_eq!(key.bytes_for_test(), &[7u8; 32]);
    }

    #[test]
    fn bad_file_content_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        let short = b64::encode_url(&[9u8; 31]);
        let long = b64::encode_url(&[9u8; 33]);
        let cases: [(&str, MasterKeyFormat); 5] = [
            ("", MasterKeyFormat::Empty),
            ("\n \n", MasterKeyFormat::Empty),
            (&short, MasterKeyFormat::WrongLength(31)),
            (&long, MasterKeyFormat::WrongLength(33)),
            ("this is not base64 at all!!", MasterKeyFormat::NotBase64),
        ];
        for (content, expected) in cases {
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = MasterKey::from_file(&path).unwrap_err();
            assert!(
                matches!(&err, CustodyError::MasterKeyFile { why, .. } if *why == expected),
                "{err:?}"
            );
            if !content.trim().is_empty() {
                assert!(!err.to_string().contains(content.trim()));
                assert!(!format!("{err:?}").contains(content.trim()));
            }
        }
        fs::write(&path, "A".repeat(10_000)).unwrap();
        assert!(matches!(
            MasterKey::from_file(&path),
            Err(CustodyError::MasterKeyFile {
                why: MasterKeyFormat::TooLong,
                ..
            })
        ));
        assert!(matches!(
            MasterKey::from_file(dir.path()),
            Err(CustodyError::MasterKeyNotAFile { .. })
        ));
        assert!(matches!(
            MasterKey::from_file(&dir.path().join("missing")),
            Err(CustodyError::Io { .. })
        ));
    }

    #[test]
    fn environment_values() {
        let mut raw: [u8; 32] = std::array::from_fn(|i| u8::try_from(i * 7 + 3).unwrap());
        raw[0] = 0xfb;
        raw[1] = 0xff;
        let url = b64::encode_url(&raw);
        let std = b64::encode_std(&raw);
        // The two alphabets really differ for this key.
        assert_ne!(url, std.trim_end_matches('='));
        for good in [
            url.clone(),
            std.clone(),
            format!("  {url}\n"),
            format!("\t{std} \r\n"),
        ] {
            let key = MasterKey::from_env_value(&good).unwrap();
            assert_eq!(key.bytes_for_test(), &raw);
        }
        let bad = [
            (String::new(), MasterKeyFormat::Empty),
            ("   ".to_owned(), MasterKeyFormat::Empty),
            (
                b64::encode_url(&raw[..16]),
                MasterKeyFormat::WrongLength(16),
            ),
            (
                b64::encode_std(&[1u8; 31]),
                MasterKeyFormat::WrongLength(31),
            ),
            (
                b64::encode_url(&[1u8; 64]),
                MasterKeyFormat::WrongLength(64),
            ),
            ("not base64!".to_owned(), MasterKeyFormat::NotBase64),
            (format!("{url}="), MasterKeyFormat::NotBase64),
            (
                format!("{} {}", &url[..20], &url[20..]),
                MasterKeyFormat::NotBase64,
            ),
            ("A".repeat(300), MasterKeyFormat::TooLong),
        ];
        for (value, expected) in bad {
            match MasterKey::from_env_value(&value) {
                Err(CustodyError::MasterKeyEnv(why)) => assert_eq!(why, expected, "{value:?}"),
                other => panic!("{value:?}: {other:?}"),
            }
        }
        let err = MasterKey::from_env_value(&b64::encode_url(&[0x5a; 20])).unwrap_err();
        assert!(err.to_string().contains(MASTER_KEY_ENV));
        assert!(!err.to_string().contains(&b64::encode_url(&[0x5a; 20])));
    }

    #[test]
    fn debug_is_redacted() {
        let raw = [0xC3u8; 32];
        let key = MasterKey::from_bytes(raw);
        let debug = format!("{key:?}");
        assert_eq!(debug, "MasterKey(<redacted>)");
        let generated = MasterKey::generate().unwrap();
        let debug = format!("{generated:?} {generated:#?}");
        assert!(!debug.contains(&b64::encode_url(generated.bytes_for_test())));
        assert!(!debug.contains(&b64::encode_std(generated.bytes_for_test())));
    }

    #[test]
    fn derivation_depends_on_the_label_and_the_key() {
        let a = MasterKey::from_bytes([1; 32]);
        let b = MasterKey::from_bytes([2; 32]);
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        let mut z = [0u8; 32];
        a.derive(b"one", &mut x).unwrap();
        a.derive(b"two", &mut y).unwrap();
        b.derive(b"one", &mut z).unwrap();
        assert_ne!(x, y);
        assert_ne!(x, z);
        let mut again = [0u8; 32];
        a.derive(b"one", &mut again).unwrap();
        assert_eq!(x, again);
    }
}
