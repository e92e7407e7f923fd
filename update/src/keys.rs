//! Ed25519 keys in TUF's key format, their key ids, and the files they live
//! in (private keys as PKCS#8 PEM like the appliance's other keys, public
//! keys as the TUF key object).

use std::io::Write;
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cjson::to_canonical;

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not a key of the kind expected.
    #[error("{path}: not a valid key: {reason}")]
    Invalid {
        /// The key file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The public half of a key as TUF metadata lists it
/// (`{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":HEX}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// Always `ed25519`: the only key type this subset accepts.
    pub keytype: String,
    /// Always `ed25519`.
    pub scheme: String,
    /// The key material.
    pub keyval: KeyVal,
}

/// The `keyval` object of a TUF key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    /// Hex of the 32-byte Ed25519 public key.
    pub public: String,
}

impl PublicKey {
    /// The TUF key object for an Ed25519 verifying key.
    pub fn from_verifying(key: &VerifyingKey) -> Self {
        PublicKey {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: hex::encode(key.as_bytes()),
            },
        }
    }

    /// The TUF key id: SHA-256 of the key object's canonical JSON, in hex.
    pub fn key_id(&self) -> String {
        let value = serde_json::to_value(self).expect("a key object always serialises");
        let bytes = to_canonical(&value).expect("a key object has no floats");
        hex::encode(Sha256::digest(bytes))
    }

    /// The Ed25519 key, or why this key object is not one this subset uses.
    pub fn verifying_key(&self) -> Result<VerifyingKey, String> {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return Err(format!(
                "unsupported key type {}/{}",
                self.keytype, self.scheme
            ));
        }
        let raw = hex::decode(&self.keyval.public).map_err(|e| e.to_string())?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| "an ed25519 public key is 32 bytes".to_string())?;
        VerifyingKey::from_bytes(&raw).map_err(|e| e.to_string())
    }
}

/// Key id of the public half of `key`.
pub fn key_id_of(key: &SigningKey) -> String {
    PublicKey::from_verifying(&key.verifying_key()).key_id()
}

/// A TUF signature object: `{"keyid": HEX, "sig": HEX}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Key id of the signing key.
    pub keyid: String,
    /// Hex of the Ed25519 signature over the canonical `signed` bytes.
    pub sig: String,
}

/// Signs canonical bytes with `key`.
pub fn sign_bytes(key: &SigningKey, bytes: &[u8]) -> Signature {
    Signature {
        keyid: key_id_of(key),
        sig: hex::encode(key.sign(bytes).to_bytes()),
    }
}

/// A fresh random Ed25519 key.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// Writes `key` as PKCS#8 PEM, readable by its owner only, and its public
/// TUF key object beside it (`<path>.pub`).
pub fn write_key_pair(key: &SigningKey, path: &Path) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| KeyError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let mut file = private_file(path).map_err(io)?;
    file.write_all(pem.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    let public = PublicKey::from_verifying(&key.verifying_key());
    let pub_path = public_path(path);
    let json = serde_json::to_vec_pretty(&public).expect("a key object always serialises");
    std::fs::write(&pub_path, json).map_err(|source| KeyError::Io {
        path: pub_path.display().to_string(),
        source,
    })
}

/// Where [`write_key_pair`] puts the public half of `path`.
pub fn public_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Reads a private key written by [`write_key_pair`].
pub fn read_private(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Reads a public TUF key object (a `.pub` file).
pub fn read_public(path: &Path) -> Result<PublicKey, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let invalid = |reason: String| KeyError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let key: PublicKey = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    key.verifying_key().map_err(invalid)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_private_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root1.key");
        let key = SigningKey::from_bytes(&[3; 32]);
        write_key_pair(&key, &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private(&path).unwrap().to_bytes(), key.to_bytes());
        let public = read_public(&public_path(&path)).unwrap();
        assert_eq!(public.key_id(), key_id_of(&key));
        assert!(
            write_key_pair(&key, &path).is_err(),
            "never overwrites a key"
        );
    }
}
