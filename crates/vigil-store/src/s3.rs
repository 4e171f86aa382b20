//! The S3-compatible artifact store (object_store), shared by the server (uploads, downloads,
//! digests) and the gateway (loading served models).

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use vigil_core::{Error, ErrorCode};

/// An S3-compatible artifact store and the key prefix under which artifacts live.
pub struct Remote {
    /// The object store.
    pub store: Arc<dyn object_store::ObjectStore>,
    prefix: String,
}

impl Remote {
    /// From `s3://bucket[/prefix]` and the `AWS_*` environment.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Self::from_url_with(url, &[])
    }

    /// From `s3://bucket[/prefix]`, the `AWS_*` environment, then explicit options (object_store
    /// configuration keys such as `aws_endpoint`, `aws_access_key_id`, `aws_allow_http`).
    pub fn from_url_with(url: &str, options: &[(&str, &str)]) -> Result<Self, Error> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| Error::new(ErrorCode::InvalidText, "artifact store URLs are s3://bucket[/prefix]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::new(ErrorCode::InvalidText, "the artifact store URL names no bucket"));
        }
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (k, v) in options {
            let key: object_store::aws::AmazonS3ConfigKey = k.parse().map_err(|_| Error::new(ErrorCode::InvalidText, "unknown S3 option"))?;
            builder = builder.with_config(key, *v);
        }
        let store = builder.build().map_err(|e| Error::storage(format!("cannot configure the S3 artifact store: {e}")))?;
        Ok(Remote { store: Arc::new(store), prefix: prefix.trim_matches('/').to_owned() })
    }

    /// The object key of an artifact path (its checked segments) under the prefix.
    pub fn key(&self, segs: &[&str]) -> object_store::path::Path {
        let mut parts: Vec<&str> = self.prefix.split('/').filter(|s| !s.is_empty()).collect();
        parts.extend_from_slice(segs);
        object_store::path::Path::from_iter(parts)
    }

    /// Every object under an artifact path (or the one object it names): path relative to it
    /// (empty for a single object), size and key, in path order.
    pub async fn tree(&self, segs: &[&str]) -> Result<Vec<(String, u64, object_store::path::Path)>, Error> {
        let base = self.key(segs);
        let mut listed = self.store.list(Some(&base));
        let mut objects = Vec::new();
        while let Some(o) = listed.next().await {
            objects.push(o.map_err(s3_err)?);
        }
        if objects.is_empty()
            && let Ok(meta) = self.store.head(&base).await
        {
            objects.push(meta);
        }
        let base_text = base.to_string();
        let mut out: Vec<(String, u64, object_store::path::Path)> = objects
            .into_iter()
            .map(|o| {
                let name = o.location.to_string();
                let rel = name.strip_prefix(&base_text).unwrap_or(&name).trim_start_matches('/').to_owned();
                (rel, o.size, o.location)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The SHA-256 (hex) of an object, streamed.
    pub async fn sha256(&self, key: &object_store::path::Path) -> Result<String, Error> {
        let got = self.store.get(key).await.map_err(s3_err)?;
        let mut hasher = Sha256::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(s3_err)?);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// An object's bytes (at most `limit`).
    pub async fn read(&self, key: &object_store::path::Path, limit: u64) -> Result<Vec<u8>, Error> {
        let got = self.store.get(key).await.map_err(s3_err)?;
        if got.meta.size > limit {
            return Err(Error::storage("the artifact is too large to load"));
        }
        Ok(got.bytes().await.map_err(s3_err)?.to_vec())
    }
}

/// The error of a failed S3 call (no keys or credentials in it).
pub fn s3_err(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::new(ErrorCode::ArtifactNotFound, "no artifact at that path"),
        _ => Error::storage("the S3 artifact store failed"),
    }
}
