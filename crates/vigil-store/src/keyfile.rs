//! The server's Ed25519 signing key on disk.
//!
//! The key seals every approval signature. It must live *outside* the database: whoever can
//! edit the database but not read this file cannot forge or move a signature. Embedded, it is
//! `keys/signing.key` in the data directory (mode 0600); with PostgreSQL, every replica gets the
//! same key file through `--signing-key FILE` / `VIGIL_SIGNING_KEY_FILE`.

use std::io::Write;
use std::path::{Path, PathBuf};
use vigil_core::approval::ServerKey;
use vigil_core::{Error, ErrorCode, Result};

/// The key file inside a data directory.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("signing.key")
}

fn key_err(msg: String) -> Error {
    Error::new(ErrorCode::SigningKey, msg)
}

/// Loads the key (64 hex characters of seed).
pub fn load(path: &Path) -> Result<ServerKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| key_err(format!("cannot read signing key {}: {e}; run 'vigil init' or pass --signing-key", path.display())))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| key_err(format!("signing key {} is not 64 hexadecimal characters", path.display())))?;
    Ok(ServerKey::from_seed(seed))
}

/// Creates a new key file (refusing to overwrite one) and returns the key.
pub fn create(path: &Path) -> Result<ServerKey> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| key_err(format!("cannot create {}: {e}", parent.display())))?;
    }
    let key = ServerKey::generate()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| key_err(format!("cannot create signing key {}: {e}", path.display())))?;
    f.write_all(format!("{}\n", hex::encode(key.seed())).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| key_err(format!("cannot write signing key {}: {e}", path.display())))?;
    Ok(key)
}

/// Loads the key, or creates it if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<ServerKey> {
    if path.exists() { load(path) } else { create(path) }
}
