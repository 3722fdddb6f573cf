//! Relay frames: the binary WebSocket frames the broker forwards between two
//! ids that both agreed to relay (`relay` … `relay-ready`).
//!
//! ```text
//!   client → broker:  [n: u8][n bytes: the receiver's id][payload]
//!   broker → client:  [n: u8][n bytes: the sender's id][payload]
//! ```
//!
//! The broker reads only the id; the payload is the SDK's (see
//! `core::engine::relay`).

use super::ids::check_peer_id;

/// The largest payload one relay frame may carry.
pub const MAX_RELAY_PAYLOAD: usize = 64 * 1024;

/// A relay frame for (or from) `id`.
pub fn encode(id: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + id.len() + payload.len());
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The id and payload of a relay frame, or what is wrong with it.
pub fn decode(frame: &[u8]) -> Result<(&str, &[u8]), &'static str> {
    let (&n, rest) = frame.split_first().ok_or("an empty relay frame")?;
    let n = n as usize;
    if rest.len() < n {
        return Err("a relay frame shorter than its id");
    }
    let (id, payload) = rest.split_at(n);
    let id = std::str::from_utf8(id).map_err(|_| "a relay frame's id is not UTF-8")?;
    check_peer_id(id).map_err(|_| "a relay frame's id is not a peer id")?;
    if payload.len() > MAX_RELAY_PAYLOAD {
        return Err("a relay frame's payload is over 64 KiB");
    }
    Ok((id, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_named() {
        let f = encode("bob", &[1, 2, 3]);
        assert_eq!(f, [3, b'b', b'o', b'b', 1, 2, 3]);
        assert_eq!(decode(&f), Ok(("bob", &[1u8, 2, 3][..])));
        assert_eq!(decode(&encode("bob", &[])), Ok(("bob", &[][..])));
        assert!(decode(&[]).is_err());
        assert!(decode(&[5, b'a']).is_err());
        assert!(decode(&[2, 0xff, 0xfe]).is_err());
        assert!(decode(&[1, b' ']).is_err());
        assert!(decode(&encode("bob", &vec![0; MAX_RELAY_PAYLOAD + 1])).is_err());
    }
}
