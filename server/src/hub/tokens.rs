//! Resume tokens the broker can recognise after a restart.
//!
//! A token is signed with the broker's resume key (HMAC-SHA256), which is
//! kept across restarts (`--state-dir`, `--resume-secret`; see
//! `crate::state`), and names the broker incarnation (a random boot id
//! drawn when the hub is made) that issued it:
//!
//! ```text
//!  base64url( version(1) | incarnation(8) | nonce(16) | mac(16) )       55 characters
//!  mac = HMAC-SHA256(key, "peerwire-resume-v1" 0 | id | 0 | version | incarnation | nonce)[..16]
//! ```
//!
//! The id is in the MAC, not in the token: a token is worth nothing for
//! another id. A token of this incarnation is checked as before, against
//! the session that holds the id (a replaced session's token is dead). A
//! token of an earlier incarnation with a valid MAC proves that its bearer
//! held the id before the restart; `sessions` lets it win the id back
//! once, inside the grace window that follows the restart.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use base64::Engine as _;

/// Bytes of a resume key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a broker incarnation (boot id).
pub const INCARNATION_BYTES: usize = 8;
/// Random bytes in each token.
pub const NONCE_BYTES: usize = 16;
/// Bytes of the MAC kept in a token (128 bits).
const MAC_BYTES: usize = 16;
const VERSION: u8 = 1;
const TOKEN_BYTES: usize = 1 + INCARNATION_BYTES + NONCE_BYTES + MAC_BYTES;
const CONTEXT: &[u8] = b"peerwire-resume-v1\0";

/// The key resume tokens are signed with. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ResumeKey([u8; KEY_BYTES]);

impl ResumeKey {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// A key derived from a shared secret (`--resume-secret`), so brokers
    /// given the same secret recognise each other's tokens.
    pub fn from_secret(secret: &str) -> Self {
        use sha2::Digest as _;
        let mut h = Sha256::new();
        h.update(b"peerwire-resume-secret\0");
        h.update(secret.as_bytes());
        Self(h.finalize().into())
    }

    fn mac(&self, id: &str, body: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(CONTEXT);
        mac.update(id.as_bytes());
        mac.update(&[0]);
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// A token for `id`, issued by `incarnation`, made unique by `nonce`.
    pub fn mint(
        &self,
        id: &str,
        incarnation: [u8; INCARNATION_BYTES],
        nonce: [u8; NONCE_BYTES],
    ) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&incarnation);
        bytes.extend_from_slice(&nonce);
        let mac = self.mac(id, &bytes);
        bytes.extend_from_slice(&mac);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// What `token` is for `id` to a broker of `incarnation`.
    pub fn check(&self, id: &str, token: &str, incarnation: [u8; INCARNATION_BYTES]) -> Verdict {
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return Verdict::Invalid;
        };
        if bytes.len() != TOKEN_BYTES || bytes[0] != VERSION {
            return Verdict::Invalid;
        }
        let (body, mac) = bytes.split_at(TOKEN_BYTES - MAC_BYTES);
        let expected = self.mac(id, body);
        // In time that does not depend on where they differ.
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Verdict::Invalid;
        }
        if body[1..1 + INCARNATION_BYTES] == incarnation {
            Verdict::Current
        } else {
            Verdict::Earlier
        }
    }
}

impl std::fmt::Debug for ResumeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeKey(..)")
    }
}

/// What a resume token is to this broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Issued by this incarnation for the id: the session decides.
    Current,
    /// Issued for the id, with this key, by another incarnation (this
    /// broker before a restart, or a broker sharing `--resume-secret`).
    Earlier,
    /// Not a token this key made for the id: forged, damaged, or another
    /// id's.
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: [u8; 8] = [1; 8];
    const BEFORE: [u8; 8] = [2; 8];

    #[test]
    fn a_token_is_current_earlier_or_invalid() {
        let key = ResumeKey::from_bytes([7; KEY_BYTES]);
        let token = key.mint("alice", NOW, [3; NONCE_BYTES]);
        assert_eq!(token.len(), 55);
        assert_eq!(key.check("alice", &token, NOW), Verdict::Current);
        assert_eq!(key.check("alice", &token, BEFORE), Verdict::Earlier);
        // Another id, another key, one changed character, garbage.
        assert_eq!(key.check("bob", &token, NOW), Verdict::Invalid);
        let other = ResumeKey::from_bytes([8; KEY_BYTES]);
        assert_eq!(other.check("alice", &token, NOW), Verdict::Invalid);
        let mut forged = token.clone().into_bytes();
        forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(key.check("alice", &forged, NOW), Verdict::Invalid);
        assert_eq!(key.check("alice", "not a token", NOW), Verdict::Invalid);
        assert_eq!(key.check("alice", "", NOW), Verdict::Invalid);
    }

    #[test]
    fn a_shared_secret_gives_the_same_key_and_the_key_is_never_printed() {
        let a = ResumeKey::from_secret("s3cret");
        assert_eq!(a, ResumeKey::from_secret("s3cret"));
        assert_ne!(a, ResumeKey::from_secret("s3cret2"));
        assert_eq!(format!("{a:?}"), "ResumeKey(..)");
    }
}
