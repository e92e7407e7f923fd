//! DSSE v1 envelopes (secure-systems-lab/dsse) signed with Ed25519.
//!
//! The signature covers the pre-authentication encoding
//! `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN being the
//! ASCII decimal byte length, so the payload type is authenticated along
//! with the payload. Pinned by the DSSE repository's test vectors.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as B64};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ed25519_dalek::{Signature as EdSignature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The payload type of an in-toto Statement.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// What is wrong with an envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsseError {
    /// A base64 field that does not decode.
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    /// The envelope is not the JSON shape DSSE defines.
    #[error("envelope is not valid DSSE JSON: {0}")]
    Json(String),
    /// No signature verifies with the key.
    #[error("none of the {count} signature(s) verifies with key {fingerprint}")]
    NoValidSignature {
        /// Signatures in the envelope.
        count: usize,
        /// SHA-256 fingerprint of the key tried.
        fingerprint: String,
    },
}

/// DSSE's pre-authentication encoding of `payload` under `payload_type`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The hex SHA-256 of a raw Ed25519 public key: our key fingerprint and
/// the DSSE `keyid`.
pub fn fingerprint(key: &VerifyingKey) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Unauthenticated hint naming the key (our fingerprint).
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Base64 of the serialized body.
    pub payload: String,
    /// Media type of the body.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Signatures over the PAE.
    pub signatures: Vec<Signature>,
}

/// Decoders accepting both the standard and the URL-safe alphabet, with or
/// without padding, as DSSE asks verifiers to.
fn decode_lenient(text: &str) -> Option<Vec<u8>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&alphabet::STANDARD, config);
    let url = GeneralPurpose::new(&alphabet::URL_SAFE, config);
    standard.decode(text).or_else(|_| url.decode(text)).ok()
}

impl Envelope {
    /// Sign `payload` as `payload_type` with `key`.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Self {
        let sig = key.sign(&pae(payload_type, payload));
        Self {
            payload: B64.encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![Signature {
                keyid: fingerprint(&key.verifying_key()),
                sig: B64.encode(sig.to_bytes()),
            }],
        }
    }

    /// Parse the JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DsseError> {
        serde_json::from_slice(bytes).map_err(|e| DsseError::Json(e.to_string()))
    }

    /// The JSON form written to bundles (compact, one line, newline-ended).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("envelope serializes");
        out.push(b'\n');
        out
    }

    /// The decoded payload, unauthenticated.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        decode_lenient(&self.payload).ok_or(DsseError::Base64("payload"))
    }

    /// The decoded payload if some signature verifies with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Vec<u8>, DsseError> {
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        let ok = self.signatures.iter().any(|s| {
            decode_lenient(&s.sig)
                .and_then(|b| EdSignature::from_slice(&b).ok())
                .is_some_and(|sig| key.verify_strict(&message, &sig).is_ok())
        });
        if ok {
            Ok(payload)
        } else {
            Err(DsseError::NoValidSignature {
                count: self.signatures.len(),
                fingerprint: fingerprint(key),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// secure-systems-lab/dsse testvectors/vectors.json: key A (RFC 8032
    /// test 1) and the vectors that do not need a policy layer.
    const SEED_A: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const STATEMENT: &str = "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==";

    fn key_a() -> SigningKey {
        SigningKey::from_bytes(&hex::decode(SEED_A).unwrap().try_into().unwrap())
    }

    fn envelope(payload: &str, payload_type: &str, sig: &str) -> Envelope {
        Envelope {
            payload: payload.into(),
            payload_type: payload_type.into(),
            signatures: vec![Signature {
                keyid: "A".into(),
                sig: sig.into(),
            }],
        }
    }

    #[test]
    fn spec_vectors() {
        let key = key_a().verifying_key();
        let cases = [
            (STATEMENT, INTOTO_PAYLOAD_TYPE,
             "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==",
             "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203433207b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d"),
            ("-_-_Pj8=", INTOTO_PAYLOAD_TYPE,
             "P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW886DbWNWcCmX5twLrAw==",
             "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203520fbffbf3e3f"),
            (STATEMENT, "application/vnd.ex\u{e4}mple+json",
             "xmSk/ug66ysT7ayhkCIjhAq42zgZXSsEWuzUaNL7w2eGAdF/NU6/fRXPtmfN+5DNSAs5/i2lUnHjbbjPsu0tAw==",
             "445353457631203239206170706c69636174696f6e2f766e642e6578c3a46d706c652b6a736f6e203433207b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d"),
            ("", INTOTO_PAYLOAD_TYPE,
             "gSggCAaTLTYyRH6FIDBem6meyIynsYy8RTHVzwx9tnTb7Bg/1jMWnuVgI/gffqmbsC2VX5/jHfkkDqsj7CDbDg==",
             "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203020"),
        ];
        for (payload, payload_type, sig, want_pae) in cases {
            let env = envelope(payload, payload_type, sig);
            let body = env.payload_bytes().unwrap();
            assert_eq!(hex::encode(pae(payload_type, &body)), want_pae);
            assert_eq!(env.verify(&key).unwrap(), body, "{payload_type}");
            // Ed25519 is deterministic: signing again gives the published bytes.
            let ours = Envelope::sign(payload_type, &body, &key_a());
            assert_eq!(decode_lenient(&ours.signatures[0].sig), decode_lenient(sig));
        }
        // payload-type-swapped: the signature covers another type.
        let swapped = envelope(STATEMENT, "application/vnd.example.other+json",
            "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==");
        assert!(swapped.verify(&key).is_err());
    }

    #[test]
    fn json_shape() {
        let env = Envelope::sign(INTOTO_PAYLOAD_TYPE, b"{}", &key_a());
        let json = String::from_utf8(env.to_json()).unwrap();
        assert!(json.starts_with("{\"payload\":\"e30=\",\"payloadType\":\"application/vnd.in-toto+json\",\"signatures\":[{\"keyid\":\""));
        assert_eq!(Envelope::from_json(json.as_bytes()).unwrap(), env);
    }
}
