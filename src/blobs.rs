//! Content-addressed blob store for originals and attachments. A blob is
//! written (and fsynced) before the message that references it is published,
//! so a message on the bus never points at a missing file.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store {dir}: {source} (check the folder exists and is writable)")]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("blob {0} is not in the store")]
    Missing(String),
}

/// The address and size of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub sha256: String,
    pub size: u64,
}

/// Blobs in a folder, sharded by the first two hex digits.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// Writes a blob incrementally, hashing as it goes, and enforces a size limit
/// while the bytes arrive (uploads are never buffered whole).
pub struct BlobWriter {
    store: BlobStore,
    tmp: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
    limit: u64,
    /// Moved to its address: nothing to clean up.
    done: bool,
}

impl BlobStore {
    /// Opens (and creates) the store folder.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("tmp")).map_err(|source| BlobError::Io {
            dir: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn io(&self, source: io::Error) -> BlobError {
        BlobError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Where a blob lives; the address is validated hex, never a sender's name.
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::Missing(sha256.to_string()));
        }
        Ok(self.dir.join(&sha256[..2]).join(sha256))
    }

    /// Starts writing a new blob of at most `limit` bytes.
    pub async fn writer(&self, limit: u64) -> Result<BlobWriter, BlobError> {
        let tmp = self.dir.join("tmp").join(uuid::Uuid::now_v7().to_string());
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| self.io(e))?;
        Ok(BlobWriter {
            store: self.clone(),
            tmp,
            file,
            hasher: Sha256::new(),
            size: 0,
            limit,
            done: false,
        })
    }

    /// Stores bytes already in memory.
    pub async fn put(&self, bytes: &[u8]) -> Result<StoredBlob, BlobError> {
        let mut w = self.writer(bytes.len() as u64).await?;
        w.write(bytes).await?;
        w.finish().await
    }

    /// Reads a whole blob.
    pub async fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(sha256)?;
        tokio::fs::read(&path).await.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BlobError::Missing(sha256.to_string()),
            _ => self.io(e),
        })
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl BlobWriter {
    /// Appends a chunk; fails (and the blob is discarded) past the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            let _ = tokio::fs::remove_file(&self.tmp).await;
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| self.store.io(e))
    }

    /// Flushes to disk and moves the blob to its address.
    pub async fn finish(mut self) -> Result<StoredBlob, BlobError> {
        self.file.flush().await.map_err(|e| self.store.io(e))?;
        self.file.sync_all().await.map_err(|e| self.store.io(e))?;
        let sha256 = hex::encode(self.hasher.finalize_reset());
        let dest = self.store.path_of(&sha256)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| self.store.io(e))?;
        }
        tokio::fs::rename(&self.tmp, &dest)
            .await
            .map_err(|e| self.store.io(e))?;
        self.done = true;
        if let Some(parent) = dest.parent()
            && let Ok(d) = tokio::fs::File::open(parent).await
        {
            let _ = d.sync_all().await;
        }
        Ok(StoredBlob {
            sha256,
            size: self.size,
        })
    }
}

/// An upload given up half-way (refused, the sender went away) leaves no
/// temporary file behind.
impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_content_same_address_and_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.put(b"iesniegums").await.unwrap();
        let b = store.put(b"iesniegums").await.unwrap();
        assert_eq!(a, b);
        assert_eq!(store.get(&a.sha256).await.unwrap(), b"iesniegums");
        let mut w = store.writer(4).await.unwrap();
        assert!(matches!(
            w.write(b"12345").await,
            Err(BlobError::TooLarge { limit: 4 })
        ));
        assert!(store.path_of("../../etc/passwd").is_err());
        let mut w = store.writer(100).await.unwrap();
        w.write(b"half an upload").await.unwrap();
        drop(w);
        let left = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(left, 0, "an abandoned upload leaves no temporary file");
    }
}
