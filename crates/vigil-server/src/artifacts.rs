//! MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts…`) over a local directory.
//!
//! Uploads go to `<experiment>/<run>/artifacts/<path>` of an active run the caller may write
//! to (checked before any byte is accepted). They stream to a randomly named staging file
//! while their SHA-256 is computed, then are linked into place without replacing anything:
//! artifacts are evidence, so a path holds one content forever (the same bytes again are
//! accepted; different bytes are `409 artifact_exists`). The link and its audit event run in
//! a task the client cannot cancel by disconnecting. Paths are relative, with no `.`/`..`
//! segments, backslashes, control characters or staging names, so nothing can escape the
//! root or read an upload in flight.

use crate::AppState;
use crate::http::{ApiError, authenticate, blocking, query_pairs};
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use vigil_core::{Error, ErrorCode};

/// The staging directory's name (never a valid path segment).
const STAGING: &str = ".vigil-tmp";

/// Largest single artifact upload (5 GiB).
pub const MAX_ARTIFACT_BYTES: u64 = 5 << 30;

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

fn resolve(root: &Path, segs: &[&str]) -> PathBuf {
    let mut p = root.to_path_buf();
    for s in segs {
        p.push(s);
    }
    p
}

/// `PUT …/artifacts/{path}`: stores the request body.
pub async fn upload(State(st): State<Arc<AppState>>, UrlPath(path): UrlPath<String>, headers: HeaderMap, body: Body) -> Response {
    match upload_inner(&st, &path, &headers, body).await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({}))).into_response(),
        Err(e) => ApiError::mlflow(e).into_response(),
    }
}

async fn upload_inner(st: &Arc<AppState>, path: &str, headers: &HeaderMap, body: Body) -> Result<(), Error> {
    let principal = authenticate(st, headers).await?;
    let segs = check_path(path)?;
    // `<experiment>/<run>/artifacts/<file…>`: the only place runs' artifacts live.
    let (exp, run) = match segs.as_slice() {
        [exp, run, "artifacts", _, ..] => (exp.to_string(), run.to_string()),
        _ => return Err(Error::new(ErrorCode::InvalidPath, "artifact uploads go to <experiment>/<run>/artifacts/<path>")),
    };
    let reg = st.registry.clone();
    let (p2, e2, r2) = (principal.clone(), exp.clone(), run.clone());
    blocking(move || reg.authorize_artifact_write(&p2, &e2, &r2)).await?;
    let final_path = resolve(&st.artifacts, &segs);
    let tmp_dir = st.artifacts.join(STAGING);
    tokio::fs::create_dir_all(&tmp_dir).await.map_err(|_| Error::storage("cannot create the artifact staging directory"))?;
    let tmp = tmp_dir.join(random_name()?);
    let result = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .map_err(|_| Error::storage("cannot create a staging file for the artifact"))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| Error::new(ErrorCode::InvalidRequest, "the upload was interrupted"))?;
            size += chunk.len() as u64;
            if size > MAX_ARTIFACT_BYTES {
                return Err(Error::new(ErrorCode::InvalidRequest, "artifacts are at most 5 GiB"));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|_| Error::storage("writing the artifact failed"))?;
        }
        file.sync_all().await.map_err(|_| Error::storage("writing the artifact failed"))?;
        Ok::<_, Error>((size, hex::encode(hasher.finalize())))
    }
    .await;
    let (size, digest) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    // Linking and auditing run to completion even if the client goes away now.
    let reg = st.registry.clone();
    let rel = segs.join("/");
    tokio::task::spawn_blocking(move || finalize(&reg, &principal, &run, &rel, &tmp, &final_path, size, &digest))
        .await
        .unwrap_or_else(|_| Err(Error::storage("storing the artifact failed")))
}

/// Links the staged file into place (never replacing one) and audits the write; undoes the
/// link if the audit cannot be written.
#[allow(clippy::too_many_arguments)]
fn finalize(reg: &vigil_core::registry::Registry, who: &vigil_core::auth::Principal, run: &str, rel: &str, tmp: &Path, dest: &Path, size: u64, digest: &str) -> Result<(), Error> {
    let cleanup = |e: Error| {
        let _ = std::fs::remove_file(tmp);
        Err(e)
    };
    if let Some(parent) = dest.parent()
        && std::fs::create_dir_all(parent).is_err()
    {
        return cleanup(Error::new(ErrorCode::InvalidPath, "an artifact path segment is an existing file"));
    }
    match std::fs::hard_link(tmp, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let same = std::fs::read(dest).map(|b| hex::encode(Sha256::digest(&b)) == digest).unwrap_or(false);
            let _ = std::fs::remove_file(tmp);
            return if same {
                // The same bytes again: idempotent, and recorded.
                reg.record_artifact_write(who, run, rel, size, digest)
            } else {
                Err(Error::new(ErrorCode::ArtifactExists, "an artifact with different content exists at that path; artifacts are never replaced, use a new path"))
            };
        }
        Err(_) => return cleanup(Error::storage("moving the artifact into place failed")),
    }
    let _ = std::fs::remove_file(tmp);
    if let Err(e) = reg.record_artifact_write(who, run, rel, size, digest) {
        // Not audited, not kept (the file is new: nothing else is lost).
        let _ = std::fs::remove_file(dest);
        return Err(e);
    }
    Ok(())
}

fn random_name() -> Result<String, Error> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|_| Error::storage("no system randomness for a staging name"))?;
    Ok(hex::encode(b))
}

/// `GET …/artifacts/{path}`: the file's bytes.
pub async fn download(State(st): State<Arc<AppState>>, UrlPath(path): UrlPath<String>, headers: HeaderMap) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let segs = check_path(&path)?;
        let p = resolve(&st.artifacts, &segs);
        match tokio::fs::metadata(&p).await {
            Ok(m) if m.is_file() => {}
            _ => return Err(Error::new(ErrorCode::ArtifactNotFound, "no artifact at that path")),
        }
        let file = tokio::fs::File::open(&p).await.map_err(|_| Error::new(ErrorCode::ArtifactNotFound, "no artifact at that path"))?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(tokio_util::io::ReaderStream::new(file))).into_response())
    }
    .await;
    r.unwrap_or_else(|e| ApiError::mlflow(e).into_response())
}

/// `GET …/artifacts?path=dir`: the entries of a directory (`{}` when empty or absent).
pub async fn list(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let path = query_pairs(q.as_deref()).into_iter().find(|(k, _)| k == "path").map(|(_, v)| v).unwrap_or_default();
        let dir = if path.is_empty() || path == "/" { st.artifacts.clone() } else { resolve(&st.artifacts, &check_path(&path)?) };
        let mut files = Vec::new();
        if let Ok(mut rd) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(entry)) = rd.next_entry().await {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(STAGING) {
                    continue;
                }
                match entry.metadata().await {
                    Ok(m) if m.is_dir() => files.push(json!({"path": name, "is_dir": true})),
                    Ok(m) => files.push(json!({"path": name, "is_dir": false, "file_size": m.len()})),
                    Err(_) => {}
                }
            }
        }
        files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        Ok::<_, Error>(if files.is_empty() { json!({}) } else { json!({"files": files}) })
    }
    .await;
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ApiError::mlflow(e).into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_the_root() {
        assert_eq!(check_path("1/abc/artifacts/model/MLmodel").map(|s| s.len()).ok(), Some(5));
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a/./b", "a\\b", "a\u{0}b", "..", ".", ".vigil-tmp/abc", "1/.vigil-tmp"] {
            assert_eq!(check_path(bad).map(|_| ()).unwrap_err().code(), ErrorCode::InvalidPath, "{bad:?}");
        }
    }
}
