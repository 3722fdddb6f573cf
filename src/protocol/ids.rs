//! Naming rules for everything a client names on the wire.
//!
//! | thing            | length   | characters                                   | other rules                          |
//! |------------------|----------|----------------------------------------------|--------------------------------------|
//! | peer id          | 1–64     | `A–Z a–z 0–9 . _ -`                          | starts with a letter or digit        |
//! | room name        | 1–128    | any printable ASCII except space             |                                      |
//! | rendezvous key   | 3–64     | `a–z 0–9 _ -`                                | starts with a lowercase letter; no two separators (`_`/`-`) in a row |
//! | state key        | 1–256    | any Unicode except control characters        |                                      |
//!
//! Rendezvous keys follow the signaller handle rules (lowercase, starts with
//! a letter, no doubled underscore), widened to allow digits and `-` so that
//! generated keys such as `room-7f3a` are valid.

/// Why a name was refused: says what the rule is, so the message can be
/// shown to a developer as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} \"{value}\" is invalid: {rule}")]
pub struct NameError {
    /// Which kind of name ("peer id", "room name", ...).
    pub what: &'static str,
    /// The offending value, cut to 80 characters.
    pub value: String,
    /// The rule that was broken.
    pub rule: &'static str,
}

fn refuse(what: &'static str, value: &str, rule: &'static str) -> NameError {
    NameError {
        what,
        value: value.chars().take(80).collect(),
        rule,
    }
}

/// Checks a peer id.
pub fn check_peer_id(id: &str) -> Result<(), NameError> {
    check_id_rules("peer id", id)
}

/// Checks a hostname (registered on a hub for a node): the peer-id rules.
pub fn check_hostname(hostname: &str) -> Result<(), NameError> {
    check_id_rules("hostname", hostname)
}

/// The peer-id rules, naming `what` in the error.
fn check_id_rules(what: &'static str, id: &str) -> Result<(), NameError> {
    if id.is_empty() || id.len() > 64 {
        return Err(refuse(what, id, "use 1 to 64 characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(refuse(
            what,
            id,
            "use only letters, digits, '.', '_' and '-'",
        ));
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(refuse(what, id, "start with a letter or a digit"));
    }
    Ok(())
}

/// Checks a room name.
pub fn check_room(room: &str) -> Result<(), NameError> {
    const WHAT: &str = "room name";
    if room.is_empty() || room.len() > 128 {
        return Err(refuse(WHAT, room, "use 1 to 128 characters"));
    }
    if !room.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse(WHAT, room, "use printable ASCII without spaces"));
    }
    Ok(())
}

/// Checks a rendezvous key.
pub fn check_rendezvous_key(key: &str) -> Result<(), NameError> {
    const WHAT: &str = "rendezvous key";
    if key.len() < 3 || key.len() > 64 {
        return Err(refuse(WHAT, key, "use 3 to 64 characters"));
    }
    let bytes = key.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return Err(refuse(WHAT, key, "start with a lowercase letter"));
    }
    let separator = |b: u8| b == b'_' || b == b'-';
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || separator(b))
    {
        return Err(refuse(WHAT, key, "use only a-z, 0-9, '_' and '-'"));
    }
    if bytes.windows(2).any(|w| separator(w[0]) && separator(w[1])) {
        return Err(refuse(WHAT, key, "do not put two separators in a row"));
    }
    Ok(())
}

/// Checks a key of a room's state map.
pub fn check_state_key(key: &str) -> Result<(), NameError> {
    const WHAT: &str = "state key";
    if key.is_empty() || key.len() > 256 {
        return Err(refuse(WHAT, key, "use 1 to 256 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(refuse(WHAT, key, "do not use control characters"));
    }
    Ok(())
}

/// An id the broker assigns when a client registers without one:
/// `p-` and 16 lowercase hex digits from the given random bytes.
pub fn assigned_peer_id(random: [u8; 8]) -> String {
    let mut id = String::with_capacity(18);
    id.push_str("p-");
    for b in random {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids() {
        for ok in ["a", "alice", "Bob_2", "x.y-z", "0", &"a".repeat(64)] {
            assert_eq!(check_peer_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "é", "a/b", &"a".repeat(65)] {
            assert!(check_peer_id(bad).is_err(), "{bad}");
        }
        assert_eq!(check_peer_id("a b").unwrap_err().what, "peer id");
        check_peer_id(&assigned_peer_id([0xab; 8])).unwrap();
    }

    #[test]
    fn rooms() {
        for ok in ["lobby", "game/42:red", "!", &"r".repeat(128)] {
            assert_eq!(check_room(ok), Ok(()), "{ok}");
        }
        for bad in ["", "two words", "tab\t", "ü", &"r".repeat(129)] {
            assert!(check_room(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rendezvous_keys() {
        for ok in ["abc", "a_handle", "room-7f3a", "a1_b2-c3"] {
            assert_eq!(check_rendezvous_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "1abc",
            "a__b",
            "a-_b",
            "a b",
            "abc!",
            &"a".repeat(65),
        ] {
            assert!(check_rendezvous_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn state_keys() {
        assert!(check_state_key("cursor/alice ✓").is_ok());
        assert!(check_state_key("").is_err());
        assert!(check_state_key("a\nb").is_err());
        assert!(check_state_key(&"k".repeat(257)).is_err());
    }
}
