//! The broker's STUN service over real UDP sockets on loopback: answers
//! checked with an independent STUN implementation (`stun_codec`) and with
//! the RFC 5769 vectors sent byte by byte; malformed datagrams, rate
//! limits, metrics; and the `stun:` URL handed out at registration.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytecodec::{DecodeExt, EncodeExt};
use peerwire_broker::stun::rfc5769;
use serde_json::{Value, json};
use stun_codec::rfc5389::attributes::{Fingerprint, Software, XorMappedAddress};
use stun_codec::rfc5389::{Attribute, methods::BINDING};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
use support::{Broker, Client};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a test waits for an answer that should come.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// How long a test listens for answers that should not come.
const SILENCE: Duration = Duration::from_millis(300);

/// A UDP client on `host`.
async fn client_socket(host: &str) -> UdpSocket {
    UdpSocket::bind((host, 0)).await.expect("a client socket")
}

/// A binding request built by `stun_codec`, with SOFTWARE and FINGERPRINT.
fn codec_request(id: [u8; 12]) -> Vec<u8> {
    let mut m = Message::<Attribute>::new(MessageClass::Request, BINDING, TransactionId::new(id));
    m.add_attribute(Software::new("stun_codec test client".to_owned()).unwrap());
    let fp = Fingerprint::new(&m).unwrap();
    m.add_attribute(fp);
    MessageEncoder::new().encode_into_bytes(m).unwrap()
}

/// Reads one datagram (or `None` after `wait`).
async fn receive(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 1500];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        Ok(Err(e)) => panic!("receive: {e}"),
        Err(_) => None,
    }
}

/// Decodes an answer with `stun_codec` (which also checks its FINGERPRINT)
/// and returns its class, transaction id and XOR-MAPPED-ADDRESS.
fn decode_answer(
    bytes: &[u8],
) -> (
    MessageClass,
    [u8; 12],
    Option<SocketAddr>,
    Message<Attribute>,
) {
    let m = MessageDecoder::<Attribute>::new()
        .decode_from_bytes(bytes)
        .expect("a STUN message")
        .expect("every attribute decodes, the fingerprint matches");
    assert_eq!(m.method(), BINDING);
    let mapped = m.get_attribute::<XorMappedAddress>().map(|a| a.address());
    (m.class(), *m.transaction_id().as_bytes(), mapped, m)
}

/// Sends `request` from `client` to the broker and checks the answer with
/// `stun_codec`: a success with the request's id and the client's address.
async fn assert_mapped(client: &UdpSocket, stun: SocketAddr, request: &[u8]) {
    client.send_to(request, stun).await.unwrap();
    let answer = receive(client, ANSWER_WAIT).await.expect("an answer");
    let (class, id, mapped, m) = decode_answer(&answer);
    assert_eq!(class, MessageClass::SuccessResponse);
    assert_eq!(id[..], request[8..20]);
    assert_eq!(mapped, Some(client.local_addr().unwrap()));
    assert_eq!(
        m.get_attribute::<Software>()
            .map(|s| s.description().to_owned()),
        Some("peerwire-broker".to_owned())
    );
    assert!(
        m.get_attribute::<Fingerprint>().is_some(),
        "FINGERPRINT, as the request had"
    );
}

/// The broker's STUN packet counter for `outcome`.
async fn stun_count(b: &Broker, outcome: &str) -> u64 {
    let text = b.http_get("/metrics").await;
    let prefix = format!("peerwire_stun_packets_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// The STUN and TURN URLs a client registering through `req` is handed.
async fn ice_urls(req: impl IntoClientRequest + Unpin) -> Vec<Value> {
    let mut c = Client::connect_with(req).await;
    let r = c.request(json!({"type": "register"})).await;
    assert_eq!(r["type"], "registered", "{r}");
    r["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["urls"].as_array().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn a_binding_request_gets_the_clients_own_address_v4() {
    let b = Broker::start_with_stun(&[], "127.0.0.1").await;
    let stun = b.stun_addr().unwrap();
    let client = client_socket("127.0.0.1").await;
    assert_mapped(&client, stun, &codec_request([1; 12])).await;
    // Another client, another address and port.
    let other = client_socket("127.0.0.2").await;
    assert_mapped(&other, stun, &codec_request([2; 12])).await;
    assert_eq!(stun_count(&b, "answered").await, 2);
    b.stop().await;
}

#[tokio::test]
async fn a_binding_request_gets_the_clients_own_address_v6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let b = Broker::start_with_stun(&[], "::1").await;
    let client = client_socket("::1").await;
    assert_mapped(&client, b.stun_addr().unwrap(), &codec_request([6; 12])).await;
    b.stop().await;
}

#[tokio::test]
async fn the_rfc5769_sample_request_sent_byte_by_byte_is_answered() {
    let b = Broker::start_with_stun(&[], "127.0.0.1").await;
    let client = client_socket("127.0.0.1").await;
    assert_mapped(&client, b.stun_addr().unwrap(), &rfc5769::REQUEST).await;
    b.stop().await;
}

#[tokio::test]
async fn malformed_datagrams_get_no_answer_and_the_server_keeps_answering() {
    let b = Broker::start_with_stun(&[], "127.0.0.1").await;
    let stun = b.stun_addr().unwrap();
    let client = client_socket("127.0.0.1").await;
    let good = codec_request([9; 12]);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good.clone();
        f(&mut p);
        p
    };
    let malformed: Vec<Vec<u8>> = vec![
        vec![],
        good[..19].to_vec(),
        with(&|p| p[5] ^= 0xff),                // wrong cookie
        with(&|p| p[3] += 4),                   // length longer than the datagram
        with(&|p| p.truncate(p.len() - 4)),     // datagram shorter than its length
        with(&|p| p.extend([0, 0, 0, 0])),      // trailing bytes
        with(&|p| p[3] -= 1),                   // length not a multiple of 4
        with(&|p| *p.last_mut().unwrap() ^= 1), // wrong FINGERPRINT
        with(&|p| p[0] = 0xc0),                 // top bits set
        // An attribute whose (odd) length runs past the message.
        {
            let mut p = good[..20].to_vec();
            p[2..4].copy_from_slice(&8u16.to_be_bytes());
            p.extend([0x80, 0x22, 0x00, 0x05, b'a', b'b', b'c', b'd']);
            p
        },
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff; 1400],
        vec![0; 4000], // longer than the receive buffer: cut, then malformed
    ];
    let not_requests: Vec<Vec<u8>> = vec![
        rfc5769::RESPONSE_V4.to_vec(),
        rfc5769::RESPONSE_V6.to_vec(),
        with(&|p| p[1] = 0x11), // binding indication (its fingerprint is not checked)
        with(&|p| p[1] = 0x03), // TURN allocate
    ];
    for p in malformed.iter().chain(&not_requests) {
        client.send_to(p, stun).await.unwrap();
    }
    // The first answer is the one to the good request sent last.
    client.send_to(&good, stun).await.unwrap();
    let answer = receive(&client, ANSWER_WAIT)
        .await
        .expect("an answer to the good request");
    let (class, id, mapped, _) = decode_answer(&answer);
    assert_eq!((class, id), (MessageClass::SuccessResponse, [9; 12]));
    assert_eq!(mapped, Some(client.local_addr().unwrap()));
    assert_eq!(receive(&client, SILENCE).await, None, "nothing else");
    // And again after that.
    assert_mapped(&client, stun, &codec_request([10; 12])).await;

    assert_eq!(stun_count(&b, "malformed").await, malformed.len() as u64);
    assert_eq!(
        stun_count(&b, "not-binding-request").await,
        not_requests.len() as u64
    );
    assert_eq!(stun_count(&b, "answered").await, 2);
    b.stop().await;
}

#[tokio::test]
async fn unknown_comprehension_required_attributes_get_a_420() {
    let b = Broker::start_with_stun(&[], "127.0.0.1").await;
    let client = client_socket("127.0.0.1").await;
    // RFC 5780's CHANGE-REQUEST (change IP and port): this broker has no
    // second address, and says so instead of staying silent.
    let mut p = codec_request([4; 12])[..20].to_vec();
    p[2..4].copy_from_slice(&8u16.to_be_bytes());
    p.extend([0x00, 0x03, 0x00, 0x04, 0, 0, 0, 6]);
    client.send_to(&p, b.stun_addr().unwrap()).await.unwrap();
    let answer = receive(&client, ANSWER_WAIT)
        .await
        .expect("an error response");
    let (class, id, mapped, m) = decode_answer(&answer);
    assert_eq!(
        (class, id, mapped),
        (MessageClass::ErrorResponse, [4; 12], None)
    );
    let error = m
        .get_attribute::<stun_codec::rfc5389::attributes::ErrorCode>()
        .unwrap();
    assert_eq!(error.code(), 420);
    let unknown = m
        .get_attribute::<stun_codec::rfc5389::attributes::UnknownAttributes>()
        .unwrap();
    assert_eq!(
        unknown
            .unknowns()
            .iter()
            .map(|t| t.as_u16())
            .collect::<Vec<_>>(),
        [0x0003]
    );
    assert_eq!(stun_count(&b, "unknown-attribute").await, 1);
    b.stop().await;
}

#[tokio::test]
async fn answers_are_rate_limited_per_source_address() {
    let b = Broker::start_with_stun(
        &["--stun-rate-limit", "1", "--stun-rate-burst", "3"],
        "127.0.0.1",
    )
    .await;
    let stun = b.stun_addr().unwrap();
    let client = client_socket("127.0.0.1").await;
    for i in 0..6 {
        client
            .send_to(&codec_request([20 + i; 12]), stun)
            .await
            .unwrap();
    }
    let mut answered = 0;
    while receive(&client, SILENCE).await.is_some() {
        answered += 1;
    }
    assert_eq!(answered, 3, "the burst, then silence");
    // Another address has its own budget.
    let other = client_socket("127.0.0.3").await;
    assert_mapped(&other, stun, &codec_request([30; 12])).await;
    assert_eq!(stun_count(&b, "rate-limited").await, 3);
    assert_eq!(stun_count(&b, "answered").await, 4);
    b.stop().await;
}

#[tokio::test]
async fn registration_hands_out_stun_for_the_host_the_client_used() {
    let b =
        Broker::start_with_stun(&["--ice-server", "stun:other.example:3478"], "127.0.0.1").await;
    let port = b.stun_addr().unwrap().port();
    let mine = |host: &str| json!(format!("stun:{host}:{port}"));
    // As the URL says: 127.0.0.1.
    assert_eq!(
        ice_urls(b.url()).await,
        [mine("127.0.0.1"), json!("stun:other.example:3478")]
    );
    for (host_header, host) in [
        ("Broker.Example:443", "broker.example"),
        ("localhost", "localhost"),
        ("[::1]:8080", "[::1]"),
        // Unusable: the local address the connection arrived on instead.
        ("bad host!", "127.0.0.1"),
        ("evil.example?transport=tcp", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
    ] {
        let mut req = b.url().into_client_request().unwrap();
        req.headers_mut()
            .insert("host", host_header.parse().unwrap());
        assert_eq!(ice_urls(req).await[0], mine(host), "Host: {host_header}");
    }
    b.stop().await;

    // --stun-public-host names the host for everyone.
    let b = Broker::start_with_stun(&["--stun-public-host", "stun.example.org"], "127.0.0.1").await;
    let port = b.stun_addr().unwrap().port();
    let mut req = b.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("host", "broker.example".parse().unwrap());
    assert_eq!(
        ice_urls(req).await,
        [json!(format!("stun:stun.example.org:{port}"))]
    );
    b.stop().await;
}

#[tokio::test]
async fn stun_port_0_answers_nothing_and_hands_out_no_stun_of_its_own() {
    let b = Broker::start(&[
        "--stun-port",
        "0",
        "--ice-server",
        "stun:other.example:3478",
    ])
    .await;
    assert_eq!(b.stun_addr(), None);
    assert_eq!(ice_urls(b.url()).await, [json!("stun:other.example:3478")]);
    b.stop().await;
    let b = Broker::start(&["--stun-port", "0"]).await;
    let mut c = b.client().await;
    let r = c.request(json!({"type": "register"})).await;
    assert_eq!(r["iceServers"], json!([]));
    b.stop().await;
}
