//! Just enough STUN (RFC 8489, formerly RFC 5389) to answer a binding
//! request: read and check the request, write its answer. No sockets, no
//! clock; [`respond`] takes a datagram and its sender and returns the
//! datagram to send back, or why there is none.
//!
//! A message is a 20-byte header and a list of attributes:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     message type (0x0001 binding request)  | length (bytes after the header)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  magic cookie 0x2112A442                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                transaction id (96 bits)                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        attribute type         |   value length (unpadded)     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          value, zero-padded to a multiple of 4 bytes     ...  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! What gets an answer: a binding request with the magic cookie whose
//! length field matches the datagram and whose attributes fit it exactly
//! (each padded to 4 bytes), with a correct FINGERPRINT if it has one, and
//! that one last. It is answered with a binding success response carrying
//! XOR-MAPPED-ADDRESS (the sender's address, IPv4 or IPv6), SOFTWARE, and a
//! FINGERPRINT when the request had one. A request with comprehension-required
//! attributes this server does not know (RFC 5780's CHANGE-REQUEST, for
//! one) gets the error response RFC 8489 asks for: 420 with
//! UNKNOWN-ATTRIBUTES (listing at most [`MAX_UNKNOWN_LISTED`] of them).
//! Comprehension-optional attributes (0x8000 and up), credentials and ICE's
//! attributes are ignored: this server checks no credentials.
//!
//! Everything else gets no answer: anything malformed, a message of another
//! class (a response or an indication: never answering one means two STUN
//! servers cannot be set talking to each other) or of another method, and
//! the classic RFC 3489 requests without the magic cookie. An answer is
//! never longer than [`MAX_RESPONSE_LEN`] bytes whatever the request, so the
//! server is a poor amplifier.

use std::net::{IpAddr, SocketAddr};

/// The fixed value in every STUN header since RFC 5389.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Bytes in a STUN header.
pub const HEADER_LEN: usize = 20;

/// The longest answer this codec writes (a 420 listing four attributes,
/// with a FINGERPRINT, is 88 bytes; an IPv6 success response, 72).
pub const MAX_RESPONSE_LEN: usize = 96;

/// Unknown comprehension-required attributes listed in a 420 at most.
pub const MAX_UNKNOWN_LISTED: usize = 4;

/// The SOFTWARE attribute of every answer.
pub const SOFTWARE: &str = "peerwire-broker";

/// Message types (method binding, by class).
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const BINDING_ERROR: u16 = 0x0111;

/// Attribute types this codec reads or writes.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    pub const USERHASH: u16 = 0x001E;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// ICE (RFC 8445).
    pub const PRIORITY: u16 = 0x0024;
    /// ICE (RFC 8445).
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// What FINGERPRINT's CRC-32 is XORed with ("STUN").
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Comprehension-required attributes that are known here and need no
/// action from a server that checks no credentials.
const KNOWN_REQUIRED: [u16; 13] = [
    attr::MAPPED_ADDRESS,
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::UNKNOWN_ATTRIBUTES,
    attr::REALM,
    attr::NONCE,
    attr::MESSAGE_INTEGRITY_SHA256,
    attr::PASSWORD_ALGORITHM,
    attr::USERHASH,
    attr::XOR_MAPPED_ADDRESS,
    attr::PRIORITY,
    attr::USE_CANDIDATE,
];

/// A transaction id: the 96 bits that pair an answer with its request.
pub type TransactionId = [u8; 12];

/// Why a datagram gets no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not STUN, or STUN with a broken header, length, attribute or
    /// fingerprint; says what was wrong.
    Malformed(&'static str),
    /// Well-formed STUN, but not a binding request: a response, an
    /// indication, or another method.
    NotBindingRequest,
}

/// A binding request that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    pub transaction_id: TransactionId,
    /// It carried a (correct) FINGERPRINT; the answer gets one too.
    pub fingerprint: bool,
    /// Unknown comprehension-required attributes, the first
    /// [`MAX_UNKNOWN_LISTED`] of them.
    pub unknown: Vec<u16>,
}

/// Which answer a request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// A binding success response with the sender's address.
    Mapped,
    /// A 420 error response listing unknown attributes.
    UnknownAttributes,
}

/// A datagram to send back, at most [`MAX_RESPONSE_LEN`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    pub kind: AnswerKind,
    buf: [u8; MAX_RESPONSE_LEN],
    len: usize,
}

impl Answer {
    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("kind", &self.kind)
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// The answer to datagram `packet` from `from`, or why there is none.
pub fn respond(packet: &[u8], from: SocketAddr) -> Result<Answer, Ignored> {
    let request = parse_request(packet)?;
    let answer = if request.unknown.is_empty() {
        encode_success(
            &request.transaction_id,
            mapped_address(from),
            request.fingerprint,
        )
    } else {
        encode_unknown_attributes(
            &request.transaction_id,
            &request.unknown,
            request.fingerprint,
        )
    };
    // Every answer fits by construction; a miss would be a bug here, and
    // then silence is the safe reply.
    answer.ok_or(Ignored::Malformed("answer would not fit"))
}

/// The address to report for a sender: an IPv4 client reaching a
/// dual-stack socket shows up as `::ffff:a.b.c.d` and is reported as IPv4.
pub fn mapped_address(from: SocketAddr) -> SocketAddr {
    SocketAddr::new(from.ip().to_canonical(), from.port())
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks a STUN header: its length, first bits, cookie and length field.
/// Returns the message type.
fn check_header(packet: &[u8]) -> Result<u16, Ignored> {
    if packet.len() < HEADER_LEN {
        return Err(Ignored::Malformed("shorter than a STUN header"));
    }
    let kind = be16(packet, 0);
    if kind & 0xC000 != 0 {
        return Err(Ignored::Malformed("the first two bits are not zero"));
    }
    if be32(packet, 4) != MAGIC_COOKIE {
        return Err(Ignored::Malformed("no magic cookie"));
    }
    let length = be16(packet, 2) as usize;
    if length % 4 != 0 {
        return Err(Ignored::Malformed("length is not a multiple of 4"));
    }
    if HEADER_LEN + length != packet.len() {
        return Err(Ignored::Malformed(
            "length field does not match the datagram",
        ));
    }
    Ok(kind)
}

/// One attribute: its type, its value, and where its header starts.
struct Attribute<'a> {
    kind: u16,
    value: &'a [u8],
    start: usize,
}

/// Walks the attributes of a message whose header checked out.
fn attributes(packet: &[u8]) -> impl Iterator<Item = Result<Attribute<'_>, Ignored>> {
    let mut at = HEADER_LEN;
    std::iter::from_fn(move || {
        if at >= packet.len() {
            return None;
        }
        let rest = packet.len() - at;
        if rest < 4 {
            at = packet.len();
            return Some(Err(Ignored::Malformed("truncated attribute header")));
        }
        let kind = be16(packet, at);
        let len = be16(packet, at + 2) as usize;
        let padded = len.div_ceil(4) * 4;
        if padded > rest - 4 {
            at = packet.len();
            return Some(Err(Ignored::Malformed("attribute overruns the message")));
        }
        let start = at;
        at += 4 + padded;
        Some(Ok(Attribute {
            kind,
            value: &packet[start + 4..start + 4 + len],
            start,
        }))
    })
}

/// Reads a binding request.
pub fn parse_request(packet: &[u8]) -> Result<BindingRequest, Ignored> {
    if check_header(packet)? != BINDING_REQUEST {
        return Err(Ignored::NotBindingRequest);
    }
    let mut request = BindingRequest {
        transaction_id: transaction_id(packet),
        fingerprint: false,
        unknown: Vec::new(),
    };
    // RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY are ignored, but
    // for MESSAGE-INTEGRITY-SHA256 and FINGERPRINT.
    let mut after_integrity = false;
    for attribute in attributes(packet) {
        let a = attribute?;
        if request.fingerprint {
            return Err(Ignored::Malformed("attribute after FINGERPRINT"));
        }
        match a.kind {
            attr::FINGERPRINT => {
                if a.value.len() != 4 {
                    return Err(Ignored::Malformed("FINGERPRINT is not 4 bytes"));
                }
                if be32(a.value, 0) != crc32(&packet[..a.start]) ^ FINGERPRINT_XOR {
                    return Err(Ignored::Malformed("FINGERPRINT does not match"));
                }
                request.fingerprint = true;
            }
            attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 => after_integrity = true,
            kind if kind < 0x8000
                && !after_integrity
                && !KNOWN_REQUIRED.contains(&kind)
                && request.unknown.len() < MAX_UNKNOWN_LISTED =>
            {
                request.unknown.push(kind);
            }
            // Comprehension-optional, known, past MESSAGE-INTEGRITY, or an
            // unknown one beyond those listed.
            _ => {}
        }
    }
    Ok(request)
}

fn transaction_id(packet: &[u8]) -> TransactionId {
    let mut id = [0; 12];
    id.copy_from_slice(&packet[8..HEADER_LEN]);
    id
}

/// Writes one message into a fixed buffer; refuses (instead of panicking)
/// to write past [`MAX_RESPONSE_LEN`].
struct Writer {
    buf: [u8; MAX_RESPONSE_LEN],
    len: usize,
    overflow: bool,
}

impl Writer {
    fn new(kind: u16, transaction_id: &TransactionId) -> Writer {
        let mut w = Writer {
            buf: [0; MAX_RESPONSE_LEN],
            len: 0,
            overflow: false,
        };
        w.put(&kind.to_be_bytes());
        w.put(&[0, 0]);
        w.put(&MAGIC_COOKIE.to_be_bytes());
        w.put(transaction_id);
        w
    }

    fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow = true,
        }
    }

    /// An attribute, zero-padded to a multiple of 4 bytes.
    fn attribute(&mut self, kind: u16, value: &[u8]) {
        let Ok(len) = u16::try_from(value.len()) else {
            self.overflow = true;
            return;
        };
        self.put(&kind.to_be_bytes());
        self.put(&len.to_be_bytes());
        self.put(value);
        self.put(&[0; 3][..value.len().next_multiple_of(4) - value.len()]);
    }

    fn set_length(&mut self, body: usize) {
        // `body` never exceeds MAX_RESPONSE_LEN, far below u16::MAX.
        let body = u16::try_from(body).unwrap_or(u16::MAX);
        self.buf[2..4].copy_from_slice(&body.to_be_bytes());
    }

    /// Adds SOFTWARE and, if asked, FINGERPRINT; sets the length field.
    fn finish(mut self, kind: AnswerKind, fingerprint: bool) -> Option<Answer> {
        self.attribute(attr::SOFTWARE, SOFTWARE.as_bytes());
        if fingerprint && !self.overflow {
            // The length field covers the FINGERPRINT while its CRC is taken.
            self.set_length(self.len + 8 - HEADER_LEN);
            let crc = crc32(&self.buf[..self.len]) ^ FINGERPRINT_XOR;
            self.attribute(attr::FINGERPRINT, &crc.to_be_bytes());
        }
        if self.overflow {
            return None;
        }
        self.set_length(self.len - HEADER_LEN);
        Some(Answer {
            kind,
            buf: self.buf,
            len: self.len,
        })
    }
}

/// The XOR-MAPPED-ADDRESS value for `addr` in transaction `id`.
pub fn xor_mapped_address(addr: SocketAddr, id: &TransactionId) -> Vec<u8> {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut value = Vec::with_capacity(20);
    match addr.ip() {
        IpAddr::V4(ip) => {
            value.extend([0, 0x01]);
            value.extend(port.to_be_bytes());
            value.extend((u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            value.extend([0, 0x02]);
            value.extend(port.to_be_bytes());
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(id);
            value.extend(ip.octets().iter().zip(key).map(|(a, k)| a ^ k));
        }
    }
    value
}

/// A binding success response telling the client it is `mapped`.
pub fn encode_success(
    transaction_id: &TransactionId,
    mapped: SocketAddr,
    fingerprint: bool,
) -> Option<Answer> {
    let mut w = Writer::new(BINDING_SUCCESS, transaction_id);
    w.attribute(
        attr::XOR_MAPPED_ADDRESS,
        &xor_mapped_address(mapped, transaction_id),
    );
    w.finish(AnswerKind::Mapped, fingerprint)
}

/// A 420 (Unknown Attribute) error response listing `unknown`.
pub fn encode_unknown_attributes(
    transaction_id: &TransactionId,
    unknown: &[u16],
    fingerprint: bool,
) -> Option<Answer> {
    let mut w = Writer::new(BINDING_ERROR, transaction_id);
    let mut error = vec![0, 0, 4, 20];
    error.extend_from_slice(b"Unknown Attribute");
    w.attribute(attr::ERROR_CODE, &error);
    let list: Vec<u8> = unknown
        .iter()
        .take(MAX_UNKNOWN_LISTED)
        .flat_map(|t| t.to_be_bytes())
        .collect();
    w.attribute(attr::UNKNOWN_ATTRIBUTES, &list);
    w.finish(AnswerKind::UnknownAttributes, fingerprint)
}

/// What a client reads from an answer: a success response's transaction
/// id and XOR-MAPPED-ADDRESS. `None` for anything else (used by the tests
/// and the fuzz target to check answers).
pub fn parse_success(packet: &[u8]) -> Option<(TransactionId, SocketAddr)> {
    if check_header(packet).ok()? != BINDING_SUCCESS {
        return None;
    }
    let id = transaction_id(packet);
    let mut mapped = None;
    for a in attributes(packet) {
        let a = a.ok()?;
        if a.kind == attr::XOR_MAPPED_ADDRESS {
            mapped = Some(read_xor_mapped_address(a.value, &id)?);
        }
        if a.kind == attr::FINGERPRINT
            && (a.value.len() != 4
                || be32(a.value, 0) != crc32(&packet[..a.start]) ^ FINGERPRINT_XOR)
        {
            return None;
        }
    }
    Some((id, mapped?))
}

fn read_xor_mapped_address(value: &[u8], id: &TransactionId) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let port = be16(value, 2) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (value[1], value.len()) {
        (0x01, 8) => IpAddr::from((be32(value, 4) ^ MAGIC_COOKIE).to_be_bytes()),
        (0x02, 20) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(id);
            let mut octets = [0u8; 16];
            for (i, o) in octets.iter_mut().enumerate() {
                *o = value[4 + i] ^ key[i];
            }
            IpAddr::from(octets)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// CRC-32 (ISO-HDLC, the one zlib and Ethernet use), as FINGERPRINT needs.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        CRC_TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8)
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::rfc5769;

    const CLIENT_V4: &str = "192.0.2.1:32853";
    const CLIENT_V6: &str = "[2001:db8:1234:5678:11:2233:4455:6677]:32853";

    /// A binding request built by hand: header, then `attrs` as given.
    fn request(id: &TransactionId, attrs: &[u8]) -> Vec<u8> {
        let mut p = vec![0x00, 0x01];
        p.extend((attrs.len() as u16).to_be_bytes());
        p.extend(MAGIC_COOKIE.to_be_bytes());
        p.extend(id);
        p.extend(attrs);
        p
    }

    /// Appends a FINGERPRINT, fixing the length field first.
    fn with_fingerprint(mut p: Vec<u8>) -> Vec<u8> {
        let len = (p.len() - HEADER_LEN + 8) as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32(&p) ^ FINGERPRINT_XOR;
        p.extend([0x80, 0x28, 0, 4]);
        p.extend(crc.to_be_bytes());
        p
    }

    fn attribute_bytes(answer: &Answer, kind: u16) -> Option<Vec<u8>> {
        attributes(answer.bytes())
            .map(|a| a.unwrap())
            .find(|a| a.kind == kind)
            .map(|a| a.value.to_vec())
    }

    #[test]
    fn crc32_matches_the_rfc5769_fingerprints_and_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the CRC-32 check value");
        for (vector, at) in [
            (&rfc5769::REQUEST[..], 100),
            (&rfc5769::RESPONSE_V4[..], 72),
            (&rfc5769::RESPONSE_V6[..], 84),
        ] {
            assert_eq!(crc32(&vector[..at]) ^ FINGERPRINT_XOR, be32(vector, at + 4));
        }
    }

    #[test]
    fn the_rfc5769_request_is_answered_with_the_rfc5769_mapped_addresses() {
        let req = parse_request(&rfc5769::REQUEST).unwrap();
        assert_eq!(req.transaction_id, rfc5769::TRANSACTION_ID);
        assert!(req.fingerprint);
        assert!(
            req.unknown.is_empty(),
            "PRIORITY is known, the rest optional"
        );

        for (client, vector, at) in [
            (CLIENT_V4, &rfc5769::RESPONSE_V4[..], 36..48),
            (CLIENT_V6, &rfc5769::RESPONSE_V6[..], 36..60),
        ] {
            let client: SocketAddr = client.parse().unwrap();
            let answer = respond(&rfc5769::REQUEST, client).unwrap();
            assert_eq!(answer.kind, AnswerKind::Mapped);
            // Byte for byte the vector's XOR-MAPPED-ADDRESS attribute.
            let mine = attribute_bytes(&answer, attr::XOR_MAPPED_ADDRESS).unwrap();
            assert_eq!(mine, vector[at.start + 4..at.end]);
            assert_eq!(&answer.bytes()[..2], &[0x01, 0x01]);
            assert_eq!(&answer.bytes()[8..20], &rfc5769::TRANSACTION_ID);
            assert_eq!(
                attribute_bytes(&answer, attr::SOFTWARE).unwrap(),
                SOFTWARE.as_bytes()
            );
            assert!(attribute_bytes(&answer, attr::FINGERPRINT).is_some());
            assert_eq!(
                parse_success(answer.bytes()),
                Some((rfc5769::TRANSACTION_ID, client))
            );
            // And our reader reads the RFC's own responses.
            assert_eq!(
                parse_success(vector),
                Some((rfc5769::TRANSACTION_ID, client))
            );
        }
    }

    #[test]
    fn a_bare_request_gets_a_bare_answer_and_v4_mapped_senders_are_reported_as_v4() {
        let id = [7; 12];
        let bare = request(&id, &[]);
        let from: SocketAddr = "[::ffff:10.1.2.3]:5000".parse().unwrap();
        let answer = respond(&bare, from).unwrap();
        assert_eq!(
            parse_success(answer.bytes()),
            Some((id, "10.1.2.3:5000".parse().unwrap()))
        );
        assert!(attribute_bytes(&answer, attr::FINGERPRINT).is_none());
        assert_eq!(
            answer.bytes().len(),
            20 + 12 + 20,
            "header, v4 address, software"
        );
    }

    #[test]
    fn odd_length_attributes_are_read_with_their_padding() {
        // USERNAME of 5 bytes, 3 bytes of padding, then a FINGERPRINT.
        let p = with_fingerprint(request(
            &[1; 12],
            &[
                0x00, 0x06, 0x00, 0x05, b'a', b'b', b'c', b'd', b'e', 0, 0, 0,
            ],
        ));
        assert!(respond(&p, CLIENT_V4.parse().unwrap()).is_ok());
        // The same without its padding does not add up.
        let unpadded = request(
            &[1; 12],
            &[0x00, 0x06, 0x00, 0x05, b'a', b'b', b'c', b'd', b'e'],
        );
        assert_eq!(
            parse_request(&unpadded),
            Err(Ignored::Malformed("length is not a multiple of 4"))
        );
        // A value length of 9 (12 with padding) where 8 bytes follow.
        let overrun = request(&[1; 12], &[0x00, 0x06, 0x00, 0x09, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            parse_request(&overrun),
            Err(Ignored::Malformed("attribute overruns the message"))
        );
    }

    #[test]
    fn malformed_and_other_messages_get_no_answer() {
        let from: SocketAddr = CLIENT_V4.parse().unwrap();
        let good = rfc5769::REQUEST.to_vec();
        let mut cases: Vec<(&str, Vec<u8>, Ignored)> = Vec::new();
        let mal = Ignored::Malformed;
        cases.push(("empty", vec![], mal("shorter than a STUN header")));
        cases.push((
            "19 bytes",
            good[..19].to_vec(),
            mal("shorter than a STUN header"),
        ));
        let mut no_cookie = good.clone();
        no_cookie[4] ^= 1;
        cases.push(("wrong cookie", no_cookie, mal("no magic cookie")));
        let mut top_bits = good.clone();
        top_bits[0] |= 0x80;
        cases.push(("top bits", top_bits, mal("the first two bits are not zero")));
        cases.push((
            "truncated",
            good[..good.len() - 4].to_vec(),
            mal("length field does not match the datagram"),
        ));
        let mut longer = good.clone();
        longer.extend([0; 4]);
        cases.push((
            "trailing bytes",
            longer,
            mal("length field does not match the datagram"),
        ));
        let mut bad_fp = good.clone();
        bad_fp[107] ^= 1;
        cases.push(("bad fingerprint", bad_fp, mal("FINGERPRINT does not match")));
        let mut changed = good.clone();
        changed[30] ^= 1; // inside SOFTWARE: the fingerprint no longer matches
        cases.push(("changed body", changed, mal("FINGERPRINT does not match")));
        // A correct FINGERPRINT (over the final header), then SOFTWARE.
        let mut after_fp = request(&[2; 12], &[0x80, 0x28, 0, 4, 0, 0, 0, 0, 0x80, 0x22, 0, 0]);
        let crc = crc32(&after_fp[..HEADER_LEN]) ^ FINGERPRINT_XOR;
        after_fp[24..28].copy_from_slice(&crc.to_be_bytes());
        cases.push((
            "after fingerprint",
            after_fp,
            mal("attribute after FINGERPRINT"),
        ));
        let fp5 = request(&[2; 12], &[0x80, 0x28, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]);
        cases.push((
            "fingerprint of 5 bytes",
            fp5,
            mal("FINGERPRINT is not 4 bytes"),
        ));
        let half = request(&[2; 12], &[0x80, 0x22, 0, 0, 0x80]);
        cases.push((
            "half an attribute",
            half,
            mal("length is not a multiple of 4"),
        ));
        let mut header_only = request(&[2; 12], &[0, 0, 0, 0]);
        header_only[23] = 0xFF; // 255 bytes claimed, none there
        cases.push((
            "overrun",
            header_only,
            mal("attribute overruns the message"),
        ));
        for (kind, name) in [
            (BINDING_SUCCESS, "success response"),
            (BINDING_ERROR, "error response"),
            (0x0011, "binding indication"),
            (0x0003, "TURN allocate request"),
        ] {
            let mut p = good.clone();
            p[..2].copy_from_slice(&u16::to_be_bytes(kind));
            cases.push((name, p, Ignored::NotBindingRequest));
        }
        cases.push((
            "RFC 5769 response",
            rfc5769::RESPONSE_V4.to_vec(),
            Ignored::NotBindingRequest,
        ));
        // A classic RFC 3489 request: no cookie.
        let mut classic = request(&[3; 12], &[]);
        classic[4..8].copy_from_slice(&[9, 9, 9, 9]);
        cases.push(("RFC 3489 request", classic, mal("no magic cookie")));
        cases.push((
            "HTTP",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            mal("the first two bits are not zero"),
        ));
        for (name, packet, why) in cases {
            assert_eq!(respond(&packet, from).unwrap_err(), why, "{name}");
        }
    }

    #[test]
    fn unknown_required_attributes_get_a_420_listing_them() {
        // CHANGE-REQUEST (RFC 5780), then five more unknown ones, a known
        // one, an optional one, and one after MESSAGE-INTEGRITY.
        let mut attrs = vec![0x00, 0x03, 0, 4, 0, 0, 0, 6];
        for t in [0x7001u16, 0x7002, 0x7003, 0x7004, 0x7005] {
            attrs.extend(t.to_be_bytes());
            attrs.extend([0, 0]);
        }
        attrs.extend([0x00, 0x24, 0, 4, 1, 2, 3, 4]); // PRIORITY: known
        attrs.extend([0x80, 0x99, 0, 0]); // optional
        attrs.extend([0x00, 0x08, 0, 20]);
        attrs.extend([0; 20]);
        attrs.extend([0x70, 0x09, 0, 0]); // after MESSAGE-INTEGRITY: ignored
        let p = with_fingerprint(request(&[4; 12], &attrs));
        let answer = respond(&p, CLIENT_V6.parse().unwrap()).unwrap();
        assert_eq!(answer.kind, AnswerKind::UnknownAttributes);
        assert_eq!(be16(answer.bytes(), 0), BINDING_ERROR);
        assert_eq!(
            attribute_bytes(&answer, attr::ERROR_CODE).unwrap(),
            b"\0\0\x04\x14Unknown Attribute"
        );
        assert_eq!(
            attribute_bytes(&answer, attr::UNKNOWN_ATTRIBUTES).unwrap(),
            [0x00, 0x03, 0x70, 0x01, 0x70, 0x02, 0x70, 0x03]
        );
        assert_eq!(answer.bytes().len(), 88, "the longest answer");
        assert!(answer.bytes().len() <= MAX_RESPONSE_LEN);
        assert!(parse_success(answer.bytes()).is_none());
        // Its fingerprint checks out (FINGERPRINT is last).
        let fp_at = answer.bytes().len() - 8;
        assert_eq!(
            crc32(&answer.bytes()[..fp_at]) ^ FINGERPRINT_XOR,
            be32(answer.bytes(), fp_at + 4)
        );
    }

    #[test]
    fn answers_are_small_and_never_answered_themselves() {
        for (from, fp, len) in [
            (CLIENT_V4, false, 52),
            (CLIENT_V4, true, 60),
            (CLIENT_V6, false, 64),
            (CLIENT_V6, true, 72),
        ] {
            let p = if fp {
                with_fingerprint(request(&[5; 12], &[]))
            } else {
                request(&[5; 12], &[])
            };
            let answer = respond(&p, from.parse().unwrap()).unwrap();
            assert_eq!(answer.bytes().len(), len, "{from} fingerprint {fp}");
            assert_eq!(
                respond(answer.bytes(), from.parse().unwrap()),
                Err(Ignored::NotBindingRequest)
            );
        }
    }
}
