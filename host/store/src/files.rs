//! Component (and tenant model) files, named by the SHA-256 of their bytes: `{dir}/{sha256}.wasm`
//! (`.onnx` for models). A file is
//! written to a temporary name, synced and renamed, so a reader finds the whole file or none;
//! the same bytes uploaded twice (by anyone) are kept once.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct ComponentFiles {
    dir: PathBuf,
    extension: &'static str,
}

/// Whether `sha256` is a hash this store could have written (64 lowercase hex digits): nothing
/// else becomes part of a path.
fn valid_hash(sha256: &str) -> bool {
    sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

impl ComponentFiles {
    /// Component files (`.wasm`) in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            extension: "wasm",
        }
    }

    /// Tenant model files (`.onnx`) in `dir`.
    pub fn for_models(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            extension: "onnx",
        }
    }

    /// Reference logo files (`.logo`: PNG, JPEG or SVG as uploaded) in `dir`.
    pub fn for_logos(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            extension: "logo",
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, sha256: &str) -> std::io::Result<PathBuf> {
        if !valid_hash(sha256) {
            return Err(invalid("not a SHA-256 hash".into()));
        }
        Ok(self.dir.join(format!("{sha256}.{}", self.extension)))
    }

    /// Keeps `bytes` (durably, before returning) and returns their SHA-256.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha256)?;
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(sha256);
        }
        std::fs::create_dir_all(&self.dir)?;
        let temporary = self
            .dir
            .join(format!(".{sha256}.{}.partial", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map(|()| sha256)
    }

    /// The bytes kept under `sha256`, checked against it (a file changed on disk is an error,
    /// never run), at most `limit` bytes.
    pub fn read(&self, sha256: &str, limit: u64) -> std::io::Result<Vec<u8>> {
        let path = self.path(sha256)?;
        let len = std::fs::metadata(&path)?.len();
        if len > limit {
            return Err(invalid(format!(
                "file {sha256} is {len} bytes, over the {limit}-byte limit"
            )));
        }
        let bytes = std::fs::read(&path)?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(invalid(format!(
                "file {sha256} does not match its hash (changed on disk)"
            )));
        }
        Ok(bytes)
    }

    /// Removes the file (no error when it is already gone).
    pub fn remove(&self, sha256: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(sha256)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_kept_by_hash_checked_on_read_and_never_outside_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let files = ComponentFiles::new(dir.path().join("components"));
        let sha = files.put(b"\0asm component").unwrap();
        assert_eq!(files.put(b"\0asm component").unwrap(), sha);
        assert_eq!(files.read(&sha, 1 << 20).unwrap(), b"\0asm component");
        // Only the file itself is left: no temporary files.
        let names: Vec<_> = std::fs::read_dir(files.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{sha}.wasm")]);
        assert!(files.read(&sha, 4).is_err(), "over the read limit");
        std::fs::write(files.dir().join(format!("{sha}.wasm")), b"\0asm tampered!").unwrap();
        let err = files.read(&sha, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        for bad in [
            "../../etc/passwd",
            "",
            &sha.to_uppercase(),
            &format!("{sha}/"),
        ] {
            assert!(files.read(bad, 1 << 20).is_err(), "{bad}");
            assert!(files.remove(bad).is_err(), "{bad}");
        }
        files.remove(&sha).unwrap();
        files.remove(&sha).unwrap();
        assert!(files.read(&sha, 1 << 20).is_err());
    }
}
