//! Certificate renewal, the sensor's side. Client certificates live 90
//! days; after `Welcome` the uplink checks whether its certificate is in
//! the last third of its lifetime (the rule both sides apply,
//! [`vigil_proto::renewal_due`]) and if so asks for a new one over the same
//! authenticated connection, for a new key. The new pair is stored
//! crash-safely ([`Identity::install_renewed`]) and used from the next
//! connection. A failed renewal is logged and retried on the next
//! connection; the old certificate keeps working until it expires.

use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;
use vigil_proto::control::{RenewRequest, RenewResponse};
use vigil_proto::{renewal_due, ControlMessage, HostId};

use crate::enroll::{self, EnrollError, Identity};

/// Why a renewed certificate was not installed.
#[derive(Debug, Error)]
pub enum RenewError {
    /// Key or CSR generation failed.
    #[error("key generation: {0}")]
    Key(#[from] rcgen::Error),
    /// The appliance's certificate does not parse.
    #[error("the renewed certificate does not parse")]
    BadCertificate,
    /// The certificate is not for the key we generated (it would not work).
    #[error("the renewed certificate is not for the new key")]
    WrongKey,
    /// The certificate names another host id.
    #[error("the renewed certificate is for host {got:?}, this sensor is {ours}")]
    WrongHost {
        /// Ours.
        ours: HostId,
        /// What the certificate's CN says.
        got: Option<HostId>,
    },
    /// Storing the new key and certificate failed.
    #[error(transparent)]
    Store(#[from] EnrollError),
}

/// Whether the certificate `cert_der` is due for renewal at `now`. One
/// that does not parse is not (it could not have been used to connect).
pub fn due(cert_der: &[u8], now: SystemTime) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return false;
    };
    let v = cert.validity();
    renewal_due(
        v.not_before.timestamp(),
        v.not_after.timestamp(),
        unix_s(now),
    )
}

fn unix_s(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// A renewal asked for: the new key, waiting for its certificate.
pub struct Pending {
    key: rcgen::KeyPair,
}

/// A new key and the `Renew` message carrying its CSR.
pub fn request(host_name: &str) -> Result<(Pending, ControlMessage), RenewError> {
    let (key, csr_der) = enroll::new_key_and_csr(host_name)?;
    let msg = ControlMessage::Renew(RenewRequest { csr_der });
    Ok((Pending { key }, msg))
}

impl Pending {
    /// Check the appliance's certificate (our new key, our host id) and
    /// install it with the new key into `identity` (and its directory).
    pub fn complete(self, identity: &mut Identity, resp: &RenewResponse) -> Result<(), RenewError> {
        let (_, cert) = x509_parser::parse_x509_certificate(&resp.cert_der)
            .map_err(|_| RenewError::BadCertificate)?;
        let spki = &cert.public_key().subject_public_key.data;
        if spki.as_ref() != rcgen::PublicKeyData::der_bytes(&self.key) {
            return Err(RenewError::WrongKey);
        }
        let got = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .and_then(|cn| cn.parse::<HostId>().ok());
        if got != Some(identity.host) {
            return Err(RenewError::WrongHost {
                ours: identity.host,
                got,
            });
        }
        identity.install_renewed(self.key.serialize_der(), resp.cert_der.clone())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DAY: u64 = 24 * 60 * 60;

    /// A CA, and a certificate it issues for `host`, `key`, valid
    /// `from`..`to` (Unix s).
    fn issue(host: HostId, key: &rcgen::KeyPair, from: i64, to: i64) -> Vec<u8> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, host.to_string());
        p.not_before = x509_parser::time::ASN1Time::from_timestamp(from)
            .unwrap()
            .to_datetime();
        p.not_after = x509_parser::time::ASN1Time::from_timestamp(to)
            .unwrap()
            .to_datetime();
        p.signed_by(key, &ca, &ca_key).unwrap().der().to_vec()
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn due_in_the_last_third_of_a_90_day_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let t0 = 1_700_000_000;
        let cert = issue(HostId(1), &key, t0 as i64, (t0 + 90 * DAY) as i64);
        assert!(!due(&cert, at(t0)));
        assert!(!due(&cert, at(t0 + 59 * DAY)));
        assert!(due(&cert, at(t0 + 61 * DAY)));
        assert!(due(&cert, at(t0 + 100 * DAY)), "expired");
        assert!(!due(b"not a certificate", at(t0)));
    }

    #[test]
    fn a_renewed_certificate_must_be_for_the_new_key_and_our_host() {
        let dir = tempfile::tempdir().unwrap();
        let mut id = Identity {
            host: HostId(7),
            key_der: vec![1],
            cert_der: vec![2],
            ca_der: vec![3],
            stored_in: Some(dir.path().to_path_buf()),
        };
        id.save(dir.path()).unwrap();
        let (pending, msg) = request("h").unwrap();
        assert!(matches!(msg, ControlMessage::Renew(_)));
        let other_key = rcgen::KeyPair::generate().unwrap();
        let resp = |cert_der| RenewResponse {
            cert_der,
            not_after_ns: 0,
        };
        let wrong_key = issue(HostId(7), &other_key, 0, 100);
        let err = pending.complete(&mut id, &resp(wrong_key)).unwrap_err();
        assert!(matches!(err, RenewError::WrongKey), "{err}");

        let (pending, _) = request("h").unwrap();
        let wrong_host = issue(HostId(8), &pending.key, 0, 100);
        let err = pending.complete(&mut id, &resp(wrong_host)).unwrap_err();
        assert!(matches!(err, RenewError::WrongHost { .. }), "{err}");
        assert_eq!(Identity::load(dir.path()).unwrap().cert_der, vec![2]);

        let (pending, _) = request("h").unwrap();
        let key_der = pending.key.serialize_der();
        let good = issue(HostId(7), &pending.key, 0, 100);
        pending.complete(&mut id, &resp(good.clone())).unwrap();
        assert_eq!((id.key_der.clone(), id.cert_der.clone()), (key_der, good));
        let stored = Identity::load(dir.path()).unwrap();
        assert_eq!((stored.key_der, stored.cert_der), (id.key_der, id.cert_der));
    }
}
