//! What the hub takes from the world besides its inputs: random bytes for
//! resume tokens and assigned ids, the wall clock for TURN credentials, and
//! the key resume tokens are signed with (kept across restarts, see
//! `crate::state`).
//!
//! The production server passes [`HubEnv::os`] (the operating system's
//! random source, so tokens stay unguessable, and the system clock). Tests
//! and the fuzz target pass a seeded generator and a fixed time, so a run
//! replays exactly; that generator only exists in test and fuzzing builds,
//! so it cannot end up minting production tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use super::tokens::{KEY_BYTES, ResumeKey};

/// The random source could not give bytes (the OS source failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomUnavailable;

impl std::fmt::Display for RandomUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no random bytes available")
    }
}

impl std::error::Error for RandomUnavailable {}

/// Where the hub's random bytes come from.
pub trait HubRng: Send {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomUnavailable>;
}

/// The operating system's random source (`getrandom`): unguessable.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRng;

impl HubRng for OsRng {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomUnavailable> {
        getrandom::fill(dest).map_err(|_| RandomUnavailable)
    }
}

/// A predictable generator (splitmix64) for tests and fuzzing: the same
/// seed gives the same tokens and ids. Never for production.
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

#[cfg(any(test, feature = "fuzzing"))]
impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl HubRng for SeededRng {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomUnavailable> {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// The hub's random source and wall clock.
pub struct HubEnv {
    /// Resume tokens and assigned ids come from here.
    pub rng: Box<dyn HubRng>,
    /// Seconds since the Unix epoch, for the expiry of TURN credentials.
    pub unix_clock: Box<dyn Fn() -> u64 + Send>,
    /// Signs resume tokens. The same key after a restart lets the owners
    /// of ids reclaim them (see `tokens`).
    pub resume_key: ResumeKey,
}

impl HubEnv {
    /// The production environment: the OS random source and the system
    /// clock, with a resume key of this process only (see
    /// [`Self::with_resume_key`] for one kept across restarts).
    pub fn os() -> Self {
        let mut key = [0u8; KEY_BYTES];
        // Without OS random bytes no token can be made either (every
        // register is answered `internal`); the key does not matter then.
        let _ = OsRng.fill(&mut key);
        Self {
            rng: Box::new(OsRng),
            unix_clock: Box::new(system_unix_secs),
            resume_key: ResumeKey::from_bytes(key),
        }
    }

    /// The same environment, signing resume tokens with `key`.
    pub fn with_resume_key(self, key: ResumeKey) -> Self {
        Self {
            resume_key: key,
            ..self
        }
    }

    /// A replayable environment: random bytes from `seed`, and a wall clock
    /// stopped at `unix_secs`.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn seeded(seed: u64, unix_secs: u64) -> Self {
        let mut key = [0u8; KEY_BYTES];
        let _ = SeededRng::new(!seed).fill(&mut key);
        Self {
            rng: Box::new(SeededRng::new(seed)),
            unix_clock: Box::new(move || unix_secs),
            resume_key: ResumeKey::from_bytes(key),
        }
    }
}

impl std::fmt::Debug for HubEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubEnv").finish_non_exhaustive()
    }
}

fn system_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_different_seeds_differ() {
        let bytes = |seed| {
            let mut b = [0u8; 24];
            SeededRng::new(seed).fill(&mut b).unwrap();
            b
        };
        assert_eq!(bytes(1), bytes(1));
        assert_ne!(bytes(1), bytes(2));
    }

    #[test]
    fn the_os_source_gives_fresh_bytes() {
        let (mut a, mut b) = ([0u8; 24], [0u8; 24]);
        OsRng.fill(&mut a).unwrap();
        OsRng.fill(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
