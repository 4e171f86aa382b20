//! Vigil's own artifact directory on the local filesystem: path rules, and the digest a model
//! version binds (SHA-256 over `<sha256> <size> <path>` lines of every file, in path order).
//! Shared by the server (which also serves S3), the CLI and the Python package, so that
//! validation re-verifies artifacts the same way wherever it runs.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use vigil_core::validate::ArtifactCheck;
use vigil_core::{Error, ErrorCode};

/// The staging directory's name (never a valid path segment).
pub const STAGING: &str = ".vigil-tmp";

/// Checks a relative artifact path and returns its segments.
pub fn check_path(p: &str) -> Result<Vec<&str>, Error> {
    let bad = || Error::new(ErrorCode::InvalidPath, "artifact paths are relative, without '.' or '..' segments, backslashes or control characters");
    if p.is_empty() || p.len() > 1024 || p.starts_with('/') || p.contains('\\') || p.chars().any(char::is_control) {
        return Err(bad());
    }
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() || segs.iter().any(|s| *s == "." || *s == ".." || s.len() > 255 || s.starts_with(STAGING)) {
        return Err(bad());
    }
    Ok(segs)
}

/// A path under `root` from checked segments.
pub fn resolve(root: &Path, segs: &[&str]) -> PathBuf {
    let mut p = root.to_path_buf();
    for s in segs {
        p.push(s);
    }
    p
}

/// The digest of a set of `(path, size, sha256)` files; an empty set is an error (a version
/// must point at bytes that exist).
pub fn manifest_digest(mut files: Vec<(String, u64, String)>) -> Result<vigil_core::ids::Sha256Digest, Error> {
    if files.is_empty() {
        return Err(Error::new(ErrorCode::InvalidSource, "the source location holds no artifacts; upload the model before registering it"));
    }
    // Path order (the tuples sort by path first; paths are unique).
    files.sort();
    let mut manifest = String::new();
    for (path, size, sha) in &files {
        manifest.push_str(&format!("{sha} {size} {path}\n"));
    }
    Ok(vigil_core::ids::Sha256Digest::of(manifest.as_bytes()))
}

/// [`tree_digest`] of an `mlflow-artifacts:/` location in a local artifact directory, for
/// the CLI working on a data directory (`None` for other locations).
pub fn local_tree_digest(root: &Path, uri: &str) -> Result<Option<vigil_core::ids::Sha256Digest>, Error> {
    let Some(rel) = uri.strip_prefix("mlflow-artifacts:/") else { return Ok(None) };
    let segs = check_path(rel.trim_matches('/'))?;
    manifest_digest(hash_tree(&resolve(root, &segs))?).map(Some)
}

/// `(relative path, size, sha256)` of every file under `root` (or of `root` itself, when it is
/// a file); staging files are skipped.
pub fn hash_tree(root: &Path) -> Result<Vec<(String, u64, String)>, Error> {
    let mut out = Vec::new();
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(_) => return Ok(out),
    };
    if meta.is_file() {
        let bytes = std::fs::read(root).map_err(|_| Error::storage("reading an artifact failed"))?;
        out.push((String::new(), bytes.len() as u64, hex::encode(Sha256::digest(&bytes))));
        return Ok(out);
    }
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|_| Error::storage("listing artifacts failed"))?;
        for entry in rd {
            let entry = entry.map_err(|_| Error::storage("listing artifacts failed"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING) {
                continue;
            }
            let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let ft = entry.file_type().map_err(|_| Error::storage("listing artifacts failed"))?;
            if ft.is_dir() {
                stack.push((entry.path(), rel));
            } else if ft.is_file() {
                let mut f = std::fs::File::open(entry.path()).map_err(|_| Error::storage("reading an artifact failed"))?;
                let mut hasher = Sha256::new();
                let size = std::io::copy(&mut f, &mut hasher).map_err(|_| Error::storage("reading an artifact failed"))?;
                out.push((rel, size, hex::encode(hasher.finalize())));
            }
        }
    }
    Ok(out)
}

/// The artifact's bytes re-hashed where this process can read them: Vigil's own artifact
/// directory (`mlflow-artifacts:/…` under `data_dir/artifacts`, hashed as `vigil serve` does)
/// or a local file (`file://` or a plain path). Other locations (object stores, registries)
/// are not re-verified here (`None`); `vigil serve` re-verifies its S3 store.
pub fn local_artifact_check(data_dir: Option<&Path>, uri: &str) -> Option<ArtifactCheck> {
    if uri.starts_with("mlflow-artifacts:") {
        let Some(dir) = data_dir else {
            return Some(ArtifactCheck::Unreadable("Vigil's artifact store is not local here; validate through the server".into()));
        };
        return Some(match local_tree_digest(&dir.join("artifacts"), uri) {
            Ok(Some(d)) => ArtifactCheck::Digest(d),
            Ok(None) => return None,
            Err(_) => ArtifactCheck::Unreadable("the files are not in DATA_DIR/artifacts (a server with another artifact store re-verifies them)".into()),
        });
    }
    let path = match uri.strip_prefix("file://") {
        Some(p) => p,
        None if !uri.contains("://") && !uri.contains(':') => uri,
        None => return None,
    };
    let p = Path::new(path);
    Some(match std::fs::metadata(p) {
        Ok(m) if m.is_file() => match std::fs::File::open(p).and_then(|mut f| {
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(h.finalize())
        }) {
            Ok(d) => ArtifactCheck::Digest(vigil_core::ids::Sha256Digest::from_bytes(d.into())),
            Err(_) => ArtifactCheck::Unreadable("the artifact file could not be read".into()),
        },
        Ok(_) => ArtifactCheck::Unreadable("the artifact location is a directory, not the file the digest was made of".into()),
        Err(_) => ArtifactCheck::Unreadable("the artifact file does not exist here".into()),
    })
}
