//! A model folder's `manifest.json`, written with the folder (`metaprompt convert`, `tiny-model`):
//! each file's SHA-256 and size. The page keys its Cache API entries by that hash, so a model
//! redeployed under the same name is fetched again instead of served stale from the cache, and a
//! damaged cache entry or download is caught before it is parsed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lower-case hex, 64 digits.
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, FileEntry>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FileEntry {
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
        }
    }

    /// Whether `bytes` are this file; the error says how they differ.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() as u64 != self.bytes {
            return Err(format!(
                "{} bytes where the manifest names {}",
                bytes.len(),
                self.bytes
            ));
        }
        let got = sha256_hex(bytes);
        if got != self.sha256 {
            return Err(format!(
                "SHA-256 {got} where the manifest names {}",
                self.sha256
            ));
        }
        Ok(())
    }
}

impl Manifest {
    pub fn of(files: &[(&str, &[u8])]) -> Self {
        Self {
            files: files
                .iter()
                .map(|(name, bytes)| (name.to_string(), FileEntry::of(bytes)))
                .collect(),
        }
    }

    /// A manifest read from a server: every hash 64 hex digits.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        for (name, e) in &m.files {
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{name}: sha256 {:?} is not 64 hex digits",
                    e.sha256
                ));
            }
        }
        Ok(m)
    }

    /// The entry of `file`, or an error naming it.
    pub fn entry(&self, file: &str) -> Result<&FileEntry, String> {
        self.files
            .get(file)
            .ok_or_else(|| format!("{FILE} does not name {file}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_each_file_by_content_and_catches_a_changed_byte() {
        let m = Manifest::of(&[("a.bin", b"abc"), ("b.json", b"{}")]);
        // The SHA-256 of "abc" (FIPS 180-2's first example).
        let a = m.entry("a.bin").unwrap();
        assert_eq!(
            a.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        a.verify(b"abc").unwrap();
        assert!(a.verify(b"abd").unwrap_err().contains("SHA-256"));
        assert!(a.verify(b"abcd").unwrap_err().contains("4 bytes"));
        assert!(m.entry("c").unwrap_err().contains("does not name c"));
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
        let bad = br#"{"files": {"x": {"sha256": "zz", "bytes": 1}}}"#;
        assert!(Manifest::from_json(bad).unwrap_err().contains("x: sha256"));
        assert!(Manifest::from_json(b"[]").is_err());
    }
}
