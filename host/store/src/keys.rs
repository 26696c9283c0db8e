//! Identifiers and secrets.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A random identifier with a type prefix, e.g. `str_9f2c41d07a3be615`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// A random 192-bit secret with a type prefix, e.g. `mak_…` (API key) or `sk_…` (stream key).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// How secrets are stored: hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
