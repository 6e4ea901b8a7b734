//! The test point's Ed25519 signing key on disk: 64 hex digits of the seed,
//! created on first start with mode 0600.

use std::io::Write;
use std::path::Path;

use ispeed_proto::SigningKey;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create key file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} does not hold 64 hex digits")]
    Format { path: String },
    #[error("no randomness for a new key: {0}")]
    Random(getrandom::Error),
}

/// Loads the key at `path`, creating a new random one if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    load_or_create_secret(path).map(|seed| SigningKey::from_bytes(&seed))
}

/// Loads 32 secret bytes kept as 64 hex digits at `path` (a signing key's
/// seed, or an admin token), creating random ones with mode 0600 if the
/// file does not exist.
pub fn load_or_create_secret(path: &Path) -> Result<[u8; 32], KeyError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_seed(text.trim()).ok_or(KeyError::Format { path: shown }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(KeyError::Random)?;
            write_new(path, &seed).map_err(|source| KeyError::Create {
                path: shown,
                source,
            })?;
            Ok(seed)
        }
        Err(source) => Err(KeyError::Read {
            path: shown,
            source,
        }),
    }
}

fn write_new(path: &Path, seed: &[u8; 32]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    writeln!(file, "{hex}")?;
    file.sync_all()
}

/// Parses 64 hex digits.
pub fn parse_seed(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reloads_the_same_key() {
        let dir = std::env::temp_dir().join(format!("ispeed-key-{}", std::process::id()));
        let path = dir.join("tp.key");
        let _ = std::fs::remove_file(&path);
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.to_bytes(), second.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(KeyError::Format { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
