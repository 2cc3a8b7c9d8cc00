//! Fingerprints that merge: the same secret gets the same fingerprint on every machine of an
//! organisation, and nobody without the organisation's key can test a guess against one.

use sha2::{Digest, Sha256};

use crate::Finding;

/// HMAC-SHA-256's block size.
const BLOCK: usize = 64;

/// How a report's fingerprints were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum FingerprintKind {
    /// HMAC-SHA-256 under the organisation's key: comparable across machines that share it.
    #[serde(rename = "hmac-sha256")]
    Keyed,
    /// The built-in salted SHA-256 (no key was given): comparable across every keyscope, so a
    /// guessed key can be checked against it.
    #[default]
    #[serde(rename = "salted-sha256")]
    Salted,
}

impl FingerprintKind {
    /// The name reports use: `hmac-sha256` or `salted-sha256`.
    pub fn name(self) -> &'static str {
        match self {
            FingerprintKind::Keyed => "hmac-sha256",
            FingerprintKind::Salted => "salted-sha256",
        }
    }
}

/// The key fingerprints are made with, if any.
#[derive(Clone, Default)]
pub struct FingerprintKey(Option<Vec<u8>>);

/// Never shows the key.
impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FingerprintKey({})", self.kind().name())
    }
}

impl FingerprintKey {
    /// Fingerprints keyed with these bytes; `None` for an empty key, which would key nothing.
    pub fn keyed(key: impl Into<Vec<u8>>) -> Option<FingerprintKey> {
        let key = key.into();
        (!key.is_empty()).then_some(FingerprintKey(Some(key)))
    }

    /// The built-in salted fingerprints.
    pub fn salted() -> FingerprintKey {
        FingerprintKey(None)
    }

    /// Which kind of fingerprint this key makes.
    pub fn kind(&self) -> FingerprintKind {
        match self.0 {
            Some(_) => FingerprintKind::Keyed,
            None => FingerprintKind::Salted,
        }
    }

    /// The fingerprint for a finding whose salted fingerprint is `salted`: itself without a
    /// key, else the first 16 bytes of its HMAC-SHA-256, in hex (the same length).
    pub fn fingerprint(&self, salted: &str) -> String {
        match &self.0 {
            None => salted.to_owned(),
            Some(key) => hex(&hmac_sha256(key, salted.as_bytes())[..16]),
        }
    }

    /// Replaces the fingerprint of every finding.
    pub(crate) fn apply(&self, findings: &mut [Finding]) {
        if self.0.is_some() {
            for finding in findings {
                finding.fingerprint = self.fingerprint(&finding.fingerprint);
            }
        }
    }
}

/// HMAC-SHA-256 (RFC 2104): eight lines, where a crate would be one more dependency.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 2 and 6: a short key, and a key longer than a block.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn keyed_fingerprints_agree_under_one_key_and_differ_under_another() {
        let a = FingerprintKey::keyed("org key").unwrap();
        let b = FingerprintKey::keyed("other key").unwrap();
        let salted = "03e51c5489b1c2cce80779c7c0e80e69";
        assert_eq!(a.fingerprint(salted), a.fingerprint(salted));
        assert_ne!(a.fingerprint(salted), b.fingerprint(salted));
        assert_ne!(a.fingerprint(salted), salted);
        assert_eq!(a.fingerprint(salted).len(), salted.len());
        assert_eq!(FingerprintKey::salted().fingerprint(salted), salted);
        assert!(FingerprintKey::keyed("").is_none());
        assert!(!format!("{a:?}").contains("org key"));
    }
}
