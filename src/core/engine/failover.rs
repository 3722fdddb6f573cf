//! Failover between brokers. The `broker` option may list several URLs
//! (brokers of one network, or a standby). The peer dials the first;
//! whenever its socket fails to open or drops, the reconnect (after the
//! usual backoff) dials the next one, round-robin ([`BrokerUrls`]). With
//! one URL (or one behind a load balancer) every dial goes to it, as
//! before lists existed.
//!
//! On another broker the peer registers with its id and resume token, as
//! on any reconnect: a broker of the same network resumes the session; one
//! that does not know the token registers the id afresh if it is free
//! (`resumed: false`: rooms and keys are gone, the peer stays usable).
//! Connections between peers do not go through the broker and are left
//! alone; only signalling waits for the new link. Back on a broker that
//! still holds the id in its grace window under a token it issued itself
//! (the peer left it and returned before the window ended), the latest
//! token is refused (`bad-resume-token`) and the peer reclaims the id with
//! that broker's own token instead (`BrokerSession::offer_fallback_token`).
//!
//! Before the first registration each URL is tried once, one after the
//! other without waiting; `createPeer` rejects with `BrokerUnreachable`
//! (naming every URL and why) only when none of them took the
//! registration. With several URLs one dial gets `connectTimeout / URLs`
//! to register before the next URL is tried, since a host that drops
//! packets leaves the socket opening for minutes.
//!
//! ```text
//!  [a, b]  start ─► dial a ──refused──► dial b (at once) ──registered──► Up on b
//!                                         └─refused: createPeer rejects ("a: …; b: …")
//!  Up on b ──dropped──► backoff ─► dial a ──refused──► backoff ─► dial b ──► Up on b
//!  a dial with no registration within connectTimeout / 2: closed, as if refused
//! ```
//!
//! [`BrokerUrls`]: crate::core::broker::BrokerUrls

use super::Engine;
use super::types::{Action, LogLevel, Millis, Signalling};
use crate::core::broker::Link;
use crate::core::error::PeerError;

impl Engine {
    /// The broker URL in use: the one connected to or being dialled; after
    /// a drop, the one the reconnect dials. `None` on a hub.
    pub fn broker_url(&self) -> Option<&str> {
        match self.config.signalling {
            Signalling::Broker { .. } => self.brokers.current(),
            Signalling::Hub => None,
        }
    }

    /// How long one dial may take to register before the next URL is
    /// tried; `None` with one URL (it is retried, never abandoned early).
    pub(super) fn attempt_limit(&self) -> Option<Millis> {
        let n = self.brokers.len();
        (n > 1).then(|| self.config.connect_timeout as f64 / n as f64)
    }

    /// Before the first registration, the dial to the current URL failed
    /// (`detail` says how). Returns whether a URL not tried yet is left,
    /// now current; otherwise every URL failed (see
    /// [`Self::unreachable_error`]).
    pub(super) fn first_pass_failed(&mut self, detail: String) -> bool {
        let url = self.brokers.current().unwrap_or_default().to_string();
        self.unreached.push((url, detail));
        if self.unreached.len() < self.brokers.len() {
            self.brokers.advance();
            true
        } else {
            false
        }
    }

    /// `BrokerUnreachable` for the first registration: with one URL, that
    /// URL and why; with several, each URL tried and why.
    pub(super) fn unreachable_error(&mut self) -> PeerError {
        let mut tried = std::mem::take(&mut self.unreached);
        if self.brokers.len() <= 1 && tried.len() == 1 {
            let (url, detail) = tried.remove(0);
            return PeerError::BrokerUnreachable { url, detail };
        }
        PeerError::BrokerUnreachable {
            url: format!("any of {}", self.brokers.all().join(", ")),
            detail: tried
                .into_iter()
                .map(|(url, detail)| format!("{url}: {detail}"))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// The dial to the current URL did not register within
    /// [`Self::attempt_limit`]: it is closed and handled as a failed dial,
    /// so the next URL is tried.
    pub(super) fn attempt_timed_out(&mut self, now: Millis) {
        self.attempt_deadline = None;
        // Only a dial still under way (socket opening, or open with the
        // registration unanswered) is abandoned.
        let dialling = matches!(self.session.link(), Link::Down | Link::Registering)
            && self.reconnect_at.is_none();
        let Some(limit) = self.attempt_limit().filter(|_| dialling && !self.closed) else {
            return;
        };
        let detail = format!("no registration within {} ms", limit as u64);
        self.log(LogLevel::Warn, || {
            format!("the broker dial took too long ({detail}); trying the next broker")
        });
        self.action(Action::CloseBroker {
            code: 1000,
            reason: "no registration in time".into(),
        });
        let generation = self.generation;
        // The abandoned socket's own events, if any come, are old news.
        self.generation += 1;
        self.broker_closed(generation, 1006, &detail, Some(detail.clone()), now);
    }
}

#[cfg(test)]
mod tests {
    use crate::core::broker::Link;
    use crate::core::engine::{Action, Config, Engine, Event, Millis, Signalling, Transmit};
    use crate::core::error::PeerError;
    use crate::protocol::{ClientMessage, ServerMessage};

    fn engine(urls: &[&str]) -> Engine {
        let mut config = Config::new(Signalling::Broker {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            renewable_token: false,
        });
        config.id = Some("alice".into());
        Engine::new(config, 7)
    }

    /// The URLs dialled so far (draining the actions), with generations.
    fn dials(e: &mut Engine) -> Vec<(String, u64)> {
        std::iter::from_fn(|| e.poll_action())
            .filter_map(|a| match a {
                Action::DialBroker { url, generation } => Some((url, generation)),
                _ => None,
            })
            .collect()
    }

    fn events(e: &mut Engine) -> Vec<Event> {
        std::iter::from_fn(|| e.poll_event()).collect()
    }

    /// The socket of `generation` opens and the broker registers the peer;
    /// returns the id and resume token the peer presented.
    fn register(
        e: &mut Engine,
        generation: u64,
        resumed: bool,
        now: Millis,
    ) -> (Option<String>, Option<String>) {
        e.handle_broker_open(generation, now);
        let (rid, presented) = match e.poll_transmit() {
            Some(Transmit::Broker(frame)) => match ClientMessage::decode(&frame).unwrap() {
                ClientMessage::Register {
                    rid,
                    id,
                    resume_token,
                } => (rid, (id, resume_token)),
                other => panic!("expected register, got {other:?}"),
            },
            other => panic!("expected register, got {other:?}"),
        };
        let reply = ServerMessage::Registered {
            rid,
            id: "alice".into(),
            resume_token: format!("token-{generation}"),
            resumed,
            ice_servers: vec![],
            grace_ms: 10_000,
            protocol: 1,
            rooms: vec![],
            rate_limit: None,
            rate_burst: None,
            max_frame_bytes: None,
        };
        e.handle_broker_text(generation, &reply.encode(), now);
        presented
    }

    fn ready_result(events: &[Event]) -> Option<Result<(), PeerError>> {
        events.iter().find_map(|ev| match ev {
            Event::Done { result, .. } => Some(result.clone().map(|_| ())),
            _ => None,
        })
    }

    #[test]
    fn one_url_is_dialled_again_after_a_drop_and_its_refusal_rejects_at_once() {
        let mut e = engine(&["ws://a/ws"]);
        e.start(0.0);
        assert_eq!(dials(&mut e), vec![("ws://a/ws".to_string(), 1)]);
        assert_eq!(e.broker_url(), Some("ws://a/ws"));
        assert_eq!(e.poll_timeout(), Some(15_000.0), "only connectTimeout");
        register(&mut e, 1, false, 10.0);
        e.handle_broker_closed(1, 1006, "gone", 20.0);
        assert_eq!(e.broker_url(), Some("ws://a/ws"));
        let at = e.poll_timeout().unwrap();
        e.handle_timeout(at);
        assert_eq!(dials(&mut e), vec![("ws://a/ws".to_string(), 2)]);

        // Unchanged from before lists: a refusal before the first
        // registration rejects at once, naming the URL.
        let mut e = engine(&["ws://a/ws"]);
        e.start(0.0);
        dials(&mut e);
        e.handle_broker_closed(1, 1006, "", 5.0);
        let err = ready_result(&events(&mut e)).unwrap().unwrap_err();
        assert_eq!(
            err,
            PeerError::BrokerUnreachable {
                url: "ws://a/ws".into(),
                detail: "the connection was refused or dropped".into()
            }
        );
        assert!(dials(&mut e).is_empty(), "no retry");
    }

    #[test]
    fn a_refused_first_url_moves_on_to_the_next_at_once_and_registers_there() {
        let mut e = engine(&["ws://a/ws", "ws://b/ws"]);
        e.start(0.0);
        assert_eq!(dials(&mut e), vec![("ws://a/ws".to_string(), 1)]);
        e.handle_broker_closed(1, 1006, "", 5.0);
        assert_eq!(
            dials(&mut e),
            vec![("ws://b/ws".to_string(), 2)],
            "no backoff before the first registration"
        );
        assert_eq!(e.broker_url(), Some("ws://b/ws"));
        let evs = events(&mut e);
        assert!(ready_result(&evs).is_none(), "createPeer still waits");
        assert!(evs.iter().any(|ev| matches!(
            ev,
            Event::BrokerDown { url, .. } if url == "ws://a/ws"
        )));
        register(&mut e, 2, false, 10.0);
        let evs = events(&mut e);
        assert_eq!(ready_result(&evs), Some(Ok(())));
        assert!(evs.iter().any(|ev| matches!(
            ev,
            Event::Registered { first: true, url: Some(url), .. } if url == "ws://b/ws"
        )));
        assert_eq!(e.broker_link(), Link::Up);
        assert_eq!(
            e.poll_timeout(),
            Some(15_010.0),
            "keep-alive, no dial deadline"
        );
    }

    #[test]
    fn every_url_refused_rejects_naming_each_and_why() {
        let mut e = engine(&["ws://a/ws", "ws://b/ws"]);
        e.start(0.0);
        dials(&mut e);
        e.handle_broker_closed(1, 1006, "", 5.0);
        dials(&mut e);
        // b opens, then closes before answering the registration.
        e.handle_broker_open(2, 8.0);
        e.handle_broker_closed(2, 1011, "overloaded", 9.0);
        let err = ready_result(&events(&mut e)).unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reach the broker at any of ws://a/ws, ws://b/ws: \
             ws://a/ws: the connection was refused or dropped; \
             ws://b/ws: the connection closed before registering (code 1011 overloaded); \
             is `peerwire-broker` running there?"
        );
        assert!(dials(&mut e).is_empty(), "one pass only");
        assert_eq!(e.broker_link(), Link::Failed);
    }

    #[test]
    fn drops_rotate_round_robin_after_the_backoff_and_the_index_wraps() {
        let mut e = engine(&["ws://a/ws", "ws://b/ws", "ws://c/ws"]);
        e.start(0.0);
        dials(&mut e);
        register(&mut e, 1, false, 1.0);
        events(&mut e);
        let mut now = 10.0;
        let mut dialled = Vec::new();
        for generation in 1..=4 {
            e.handle_broker_closed(generation, 1006, "dropped", now);
            assert!(events(&mut e).iter().any(|ev| matches!(
                ev,
                Event::BrokerDown { url, .. } if *url == dialled.last().cloned().unwrap_or("ws://a/ws".to_string())
            )));
            assert!(dials(&mut e).is_empty(), "not before the backoff");
            let at = e.poll_timeout().unwrap();
            assert!(at > now, "the backoff waits");
            e.handle_timeout(at);
            let (url, g) = dials(&mut e).pop().expect("a redial");
            assert_eq!(g, generation + 1);
            // On the next broker: the id and the last token, as on any
            // reconnect.
            let (id, token) = register(&mut e, g, false, at);
            assert_eq!(id.as_deref(), Some("alice"));
            assert_eq!(token, Some(format!("token-{generation}")));
            events(&mut e);
            dialled.push(url);
            now = at + 1.0;
        }
        assert_eq!(
            dialled,
            ["ws://b/ws", "ws://c/ws", "ws://a/ws", "ws://b/ws"]
        );
    }

    #[test]
    fn a_dial_that_hangs_is_abandoned_for_the_next_url_after_its_share_of_connect_timeout() {
        let mut e = engine(&["ws://a/ws", "ws://b/ws"]);
        e.start(0.0);
        dials(&mut e);
        // a never opens nor closes (packets dropped): after 15000 / 2 ms
        // b is dialled, and a late event of a is ignored.
        assert_eq!(e.poll_timeout(), Some(7_500.0));
        e.handle_timeout(7_500.0);
        let actions: Vec<Action> = std::iter::from_fn(|| e.poll_action()).collect();
        assert!(matches!(actions[0], Action::CloseBroker { .. }));
        assert_eq!(
            actions[1],
            Action::DialBroker {
                url: "ws://b/ws".into(),
                generation: 3
            }
        );
        e.handle_broker_closed(1, 1006, "late", 7_600.0);
        assert_eq!(e.broker_url(), Some("ws://b/ws"), "a's late close ignored");
        // b hangs too: createPeer rejects at connectTimeout, naming both.
        e.handle_timeout(15_000.0);
        let err = ready_result(&events(&mut e)).unwrap().unwrap_err();
        assert_eq!(
            err,
            PeerError::BrokerUnreachable {
                url: "any of ws://a/ws, ws://b/ws".into(),
                detail: "ws://a/ws: no registration within 7500 ms; \
                         ws://b/ws: no registration within 7500 ms"
                    .into()
            }
        );
    }

    #[test]
    fn after_registration_a_hanging_redial_is_abandoned_and_an_up_link_never_is() {
        let mut e = engine(&["ws://a/ws", "ws://b/ws"]);
        e.start(0.0);
        dials(&mut e);
        register(&mut e, 1, false, 100.0);
        events(&mut e);
        // Up: no attempt deadline is left (the next wake-up is keep-alive).
        assert_eq!(e.poll_timeout(), Some(15_100.0));
        e.handle_broker_closed(1, 1006, "dropped", 20_000.0);
        let at = e.poll_timeout().unwrap();
        e.handle_timeout(at);
        assert_eq!(dials(&mut e), vec![("ws://b/ws".to_string(), 2)]);
        // b hangs: abandoned after 7.5 s, then (backoff) a again.
        assert_eq!(e.poll_timeout(), Some(at + 7_500.0));
        e.handle_timeout(at + 7_500.0);
        assert!(events(&mut e).iter().any(|ev| matches!(
            ev,
            Event::BrokerDown { url, reason, .. }
                if url == "ws://b/ws" && reason == "no registration within 7500 ms"
        )));
        let again = e.poll_timeout().unwrap();
        e.handle_timeout(again);
        let (url, g) = dials(&mut e).pop().unwrap();
        assert_eq!(url, "ws://a/ws");
        register(&mut e, g, true, again + 5.0);
        let evs = events(&mut e);
        assert!(evs.iter().any(|ev| matches!(
            ev,
            Event::Registered { first: false, resumed: true, url: Some(u), .. } if u == "ws://a/ws"
        )));
    }
}
