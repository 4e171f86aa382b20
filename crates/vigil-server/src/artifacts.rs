//! MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts…`) over a local directory.
//!
//! Bytes live in a local directory or, with `--artifacts s3://bucket/prefix`, in any
//! S3-compatible store (object_store; uploads staged locally, then sent as a multipart upload).
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
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
pub use vigil_store::artifacts::{STAGING, check_path, hash_tree, local_tree_digest, manifest_digest, resolve};
use vigil_core::{Error, ErrorCode};

pub use vigil_store::s3::{Remote, s3_err};

/// Largest single artifact upload (5 GiB).
pub const MAX_ARTIFACT_BYTES: u64 = 5 << 30;


/// Whose artifact a path is: a run's or a logged model's (experiment id first).
#[derive(Clone)]
enum Owner {
    Run(String, String),
    LoggedModel(String, String),
}

impl Owner {
    /// Audits the write (after re-checking that it is still allowed).
    fn record(&self, reg: &vigil_core::registry::Registry, who: &vigil_core::auth::Principal, rel: &str, size: u64, digest: &str) -> Result<(), Error> {
        match self {
            Owner::Run(_, run) => reg.record_artifact_write(who, run, rel, size, digest),
            Owner::LoggedModel(exp, id) => reg.record_logged_model_write(who, exp, id, rel, size, digest),
        }
    }
}

/// The digest a model version binds: SHA-256 over the lines `<sha256> <size> <path>\n` of
/// every file under an `mlflow-artifacts:/` location, in path order (byte order of the
/// relative paths; the path is empty when the location names one file).
/// `None` for locations outside Vigil's artifact store; an error when the location is Vigil's
/// but holds nothing (a version must point at bytes that exist).
pub async fn tree_digest(st: &Arc<AppState>, uri: &str) -> Result<Option<vigil_core::ids::Sha256Digest>, Error> {
    let Some(rel) = uri.strip_prefix("mlflow-artifacts:/") else { return Ok(None) };
    let segs: Vec<String> = check_path(rel.trim_matches('/'))?.into_iter().map(str::to_owned).collect();
    let mut files: Vec<(String, u64, String)> = Vec::new();
    if let Some(remote) = &st.remote {
        let segs_ref: Vec<&str> = segs.iter().map(String::as_str).collect();
        for (rel, size, key) in remote.tree(&segs_ref).await? {
            let sha = remote.sha256(&key).await?;
            files.push((rel, size, sha));
        }
    } else {
        let root = resolve(&st.artifacts, &segs.iter().map(String::as_str).collect::<Vec<_>>());
        files = tokio::task::spawn_blocking(move || hash_tree(&root)).await.map_err(|_| Error::storage("hashing the artifacts failed"))??;
    }
    manifest_digest(files).map(Some)
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
    // `<experiment>/<run>/artifacts/<file…>` for runs, `<experiment>/models/<id>/artifacts/<file…>`
    // for logged models: the only places artifacts are written.
    let owner = match segs.as_slice() {
        [exp, "models", id, "artifacts", _, ..] => Owner::LoggedModel(exp.to_string(), id.to_string()),
        [exp, run, "artifacts", _, ..] => Owner::Run(exp.to_string(), run.to_string()),
        _ => return Err(Error::new(ErrorCode::InvalidPath, "artifact uploads go to <experiment>/<run>/artifacts/<path> or <experiment>/models/<model id>/artifacts/<path>")),
    };
    let reg = st.registry.clone();
    let o2 = owner.clone();
    let p2 = principal.clone();
    let rel2 = segs.join("/");
    blocking(move || match &o2 {
        Owner::Run(e, r) => reg.authorize_artifact_write(&p2, e, r, &rel2),
        Owner::LoggedModel(e, m) => reg.authorize_logged_model_write(&p2, e, m),
    })
    .await?;
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
    if st.remote.is_some() {
        let st2 = st.clone();
        let key_segs: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
        return tokio::spawn(async move {
            let remote = st2.remote.as_ref().ok_or_else(|| Error::storage("no artifact store"))?;
            let segs: Vec<&str> = key_segs.iter().map(String::as_str).collect();
            let r = finalize_remote(remote, &reg, &principal, &owner, &rel, &tmp, &segs, size, &digest).await;
            let _ = tokio::fs::remove_file(&tmp).await;
            r
        })
        .await
        .unwrap_or_else(|_| Err(Error::storage("storing the artifact failed")));
    }
    tokio::task::spawn_blocking(move || finalize(&reg, &principal, &owner, &rel, &tmp, &final_path, size, &digest))
        .await
        .unwrap_or_else(|_| Err(Error::storage("storing the artifact failed")))
}

/// S3: an existing object is compared by content (never replaced); a new one is sent as a
/// multipart upload from the staged file, then audited (and deleted if the audit fails).
#[allow(clippy::too_many_arguments)]
async fn finalize_remote(
    remote: &Remote,
    reg: &Arc<vigil_core::registry::Registry>,
    who: &vigil_core::auth::Principal,
    owner: &Owner,
    rel: &str,
    tmp: &Path,
    segs: &[&str],
    size: u64,
    digest: &str,
) -> Result<(), Error> {
    use object_store::ObjectStoreExt;
    use tokio::io::AsyncReadExt;
    let key = remote.key(segs);
    match remote.store.head(&key).await {
        Ok(_) => {
            let existing = remote.store.get(&key).await.map_err(s3_err)?;
            let mut hasher = Sha256::new();
            let mut stream = existing.into_stream();
            while let Some(chunk) = stream.next().await {
                hasher.update(&chunk.map_err(s3_err)?);
            }
            if hex::encode(hasher.finalize()) != digest {
                return Err(Error::new(ErrorCode::ArtifactExists, "an artifact with different content exists at that path; artifacts are never replaced, use a new path"));
            }
        }
        Err(object_store::Error::NotFound { .. }) => {
            let upload = remote.store.put_multipart(&key).await.map_err(s3_err)?;
            let mut writer = object_store::WriteMultipart::new(upload);
            let mut file = tokio::fs::File::open(tmp).await.map_err(|_| Error::storage("reading the staged artifact failed"))?;
            let mut buf = vec![0u8; 8 << 20];
            loop {
                let n = file.read(&mut buf).await.map_err(|_| Error::storage("reading the staged artifact failed"))?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(4).await.map_err(s3_err)?;
                writer.write(&buf[..n]);
            }
            writer.finish().await.map_err(s3_err)?;
        }
        Err(e) => return Err(s3_err(e)),
    }
    let (reg2, who2, owner2, rel2, digest2) = (reg.clone(), who.clone(), owner.clone(), rel.to_owned(), digest.to_owned());
    if let Err(e) = blocking(move || owner2.record(&reg2, &who2, &rel2, size, &digest2)).await {
        let _ = remote.store.delete(&key).await;
        return Err(e);
    }
    Ok(())
}

/// Links the staged file into place (never replacing one) and audits the write; undoes the
/// link if the audit cannot be written.
#[allow(clippy::too_many_arguments)]
fn finalize(reg: &vigil_core::registry::Registry, who: &vigil_core::auth::Principal, owner: &Owner, rel: &str, tmp: &Path, dest: &Path, size: u64, digest: &str) -> Result<(), Error> {
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
                owner.record(reg, who, rel, size, digest)
            } else {
                Err(Error::new(ErrorCode::ArtifactExists, "an artifact with different content exists at that path; artifacts are never replaced, use a new path"))
            };
        }
        Err(_) => return cleanup(Error::storage("moving the artifact into place failed")),
    }
    let _ = std::fs::remove_file(tmp);
    if let Err(e) = owner.record(reg, who, rel, size, digest) {
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

/// Audits a read under a PHI-marked run, logged model or experiment.
async fn audit_read(st: &Arc<AppState>, who: vigil_core::auth::Principal, path: String, route: &'static str) -> Result<(), Error> {
    let reg = st.registry.clone();
    blocking(move || reg.audit_read(&who, vigil_core::phi::Read::Artifact(&path), route)).await
}

/// `GET …/artifacts/{path}`: the file's bytes.
pub async fn download(State(st): State<Arc<AppState>>, UrlPath(path): UrlPath<String>, headers: HeaderMap) -> Response {
    let r = async {
        let who = authenticate(&st, &headers).await?;
        let segs = check_path(&path)?;
        audit_read(&st, who, segs.join("/"), "GET mlflow-artifacts/artifacts/{path}").await?;
        if let Some(remote) = &st.remote {
            use object_store::ObjectStoreExt;
            let got = remote.store.get(&remote.key(&segs)).await.map_err(s3_err)?;
            let stream = got.into_stream().map(|r| r.map_err(std::io::Error::other));
            return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(stream)).into_response());
        }
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
        let who = authenticate(&st, &headers).await?;
        let path = query_pairs(q.as_deref()).into_iter().find(|(k, _)| k == "path").map(|(_, v)| v).unwrap_or_default();
        let segs = if path.is_empty() || path == "/" { Vec::new() } else { check_path(&path)? };
        audit_read(&st, who, segs.join("/"), "GET mlflow-artifacts/artifacts").await?;
        let mut files = Vec::new();
        if let Some(remote) = &st.remote {
            let prefix = remote.key(&segs);
            let listed = remote.store.list_with_delimiter(Some(&prefix)).await.map_err(s3_err)?;
            for d in &listed.common_prefixes {
                if let Some(name) = d.filename() {
                    files.push(json!({"path": name, "is_dir": true}));
                }
            }
            for o in &listed.objects {
                if let Some(name) = o.location.filename() {
                    files.push(json!({"path": name, "is_dir": false, "file_size": o.size}));
                }
            }
            files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
            return Ok(if files.is_empty() { json!({}) } else { json!({"files": files}) });
        }
        let dir = resolve(&st.artifacts, &segs);
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
