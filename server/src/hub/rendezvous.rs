//! Rendezvous keys (sigver's model): one opener per key, many joiners, each
//! joiner named to the opener (`joiner`) and the opener to each joiner
//! (`key-joined`); `unavailable` when either side goes. Two deadlines: an
//! opened key nobody joins is closed after the listen timeout (4000), and a
//! matched pair is ended after the pipe timeout (4001); `sweep` finds them.

use std::collections::BTreeMap;
use std::time::Instant;

use peerwire::protocol::messages::Rid;
use peerwire::protocol::{CloseCode, ErrorCode, ServerMessage};

use super::delivery::Kind;
use super::{Answer, Refusal, State, internal};

/// One opened key.
pub(super) struct Rendezvous {
    pub(super) opener: String,
    /// Each joiner with the end of its pipe deadline (if any).
    pub(super) joiners: BTreeMap<String, Option<Instant>>,
    /// While nobody has joined: when the key is closed (4000).
    pub(super) listen_deadline: Option<Instant>,
}

fn keys_error(rid: Rid, held: usize) -> Refusal {
    (
        ErrorCode::TooManyKeys,
        rid,
        format!("already holding {held} rendezvous keys"),
    )
}

impl State {
    pub(super) fn open_key(&mut self, me: &str, rid: Rid, key: String, now: Instant) -> Answer {
        match self.keys.get(&key) {
            Some(rv) if rv.opener == me => {}
            Some(_) => return Err((ErrorCode::KeyTaken, rid, format!("key {key:?} is open"))),
            None => {
                let listen_deadline = self.listen_deadline(now);
                let max = self.config.max_keys_per_peer;
                let Some(session) = self.sessions.get_mut(me) else {
                    return Err(internal(
                        rid,
                        "open-key from a connection without a session",
                    ));
                };
                if session.opened_keys.len() >= max {
                    return Err(keys_error(rid, session.opened_keys.len()));
                }
                session.opened_keys.insert(key.clone());
                self.keys.insert(
                    key.clone(),
                    Rendezvous {
                        opener: me.to_string(),
                        joiners: BTreeMap::new(),
                        listen_deadline,
                    },
                );
            }
        }
        Ok(ServerMessage::KeyOpened { rid, key })
    }

    pub(super) fn join_key(&mut self, me: &str, rid: Rid, key: String, now: Instant) -> Answer {
        let pipe_deadline = self.config.pipe_timeout.and_then(|t| now.checked_add(t));
        let max = self.config.max_keys_per_peer;
        let Some(rv) = self.keys.get_mut(&key) else {
            return Err((
                ErrorCode::UnknownKey,
                rid,
                format!("key {key:?} is not open"),
            ));
        };
        if rv.opener == me {
            return Err((
                ErrorCode::BadMessage,
                rid,
                format!("you opened key {key:?}; others join it"),
            ));
        }
        let opener = rv.opener.clone();
        if !rv.joiners.contains_key(me) {
            let Some(session) = self.sessions.get_mut(me) else {
                return Err(internal(
                    rid,
                    "join-key from a connection without a session",
                ));
            };
            if session.joined_keys.len() >= max {
                return Err(keys_error(rid, session.joined_keys.len()));
            }
            session.joined_keys.insert(key.clone());
            rv.joiners.insert(me.to_string(), pipe_deadline);
            rv.listen_deadline = None;
            let event = ServerMessage::Joiner {
                key: key.clone(),
                id: me.to_string(),
            };
            let _ = self.deliver(&opener, &event, None, Kind::Queued, now);
        }
        Ok(ServerMessage::KeyJoined { rid, key, opener })
    }

    pub(super) fn leave_key(&mut self, me: &str, rid: Rid, key: &str, now: Instant) -> Answer {
        let joined = self
            .keys
            .get(key)
            .is_some_and(|rv| rv.joiners.contains_key(me));
        if !joined {
            return Err((
                ErrorCode::UnknownKey,
                rid,
                format!("you have not joined key {key:?}"),
            ));
        }
        self.drop_joiner(me, key, now);
        Ok(ServerMessage::Ok { rid })
    }

    pub(super) fn close_key(&mut self, me: &str, rid: Rid, key: &str, now: Instant) -> Answer {
        match self.keys.get(key) {
            None => Err((
                ErrorCode::UnknownKey,
                rid,
                format!("key {key:?} is not open"),
            )),
            Some(rv) if rv.opener != me => Err((
                ErrorCode::NotOpener,
                rid,
                format!("key {key:?} was opened by another peer"),
            )),
            Some(_) => {
                self.drop_key(key, now);
                Ok(ServerMessage::Ok { rid })
            }
        }
    }

    /// Joiner `me` left `key`: the opener hears of it.
    pub(super) fn drop_joiner(&mut self, me: &str, key: &str, now: Instant) {
        if let Some(opener) = self.remove_joiner(me, key, now) {
            let event = ServerMessage::Unavailable {
                key: key.to_string(),
                id: me.to_string(),
                code: None,
            };
            let _ = self.deliver(&opener, &event, None, Kind::Queued, now);
        }
    }

    /// Takes `me` off `key`'s joiners; the key listens again once nobody is
    /// left. Returns the opener if `me` was a joiner.
    fn remove_joiner(&mut self, me: &str, key: &str, now: Instant) -> Option<String> {
        if let Some(s) = self.sessions.get_mut(me) {
            s.joined_keys.remove(key);
        }
        let listen_deadline = self.listen_deadline(now);
        let rv = self.keys.get_mut(key)?;
        rv.joiners.remove(me)?;
        if rv.joiners.is_empty() {
            rv.listen_deadline = listen_deadline;
        }
        Some(rv.opener.clone())
    }

    fn listen_deadline(&self, now: Instant) -> Option<Instant> {
        self.config.listen_timeout.and_then(|t| now.checked_add(t))
    }

    /// The pipe deadline of the pair (`opener` of `key`, `joiner`) passed:
    /// both sides hear `unavailable` with 4001.
    pub(super) fn end_pipe(&mut self, key: &str, joiner: &str, now: Instant) {
        let Some(opener) = self.remove_joiner(joiner, key, now) else {
            return;
        };
        self.metrics.close(CloseCode::PipeTimeout);
        let code = Some(CloseCode::PipeTimeout.code());
        for (to, id) in [(opener.as_str(), joiner), (joiner, opener.as_str())] {
            let event = ServerMessage::Unavailable {
                key: key.to_string(),
                id: id.to_string(),
                code,
            };
            let _ = self.deliver(to, &event, None, Kind::Queued, now);
        }
    }

    /// Nobody joined `key` in time: it is closed and its opener told (4000).
    pub(super) fn expire_key(&mut self, key: &str, now: Instant) {
        let Some(opener) = self.keys.get(key).map(|rv| rv.opener.clone()) else {
            return;
        };
        self.drop_key(key, now);
        self.metrics.close(CloseCode::ListenTimeout);
        let event = ServerMessage::KeyClosed {
            key: key.to_string(),
            code: CloseCode::ListenTimeout.code(),
            reason: CloseCode::ListenTimeout.reason().to_string(),
        };
        let _ = self.deliver(&opener, &event, None, Kind::Queued, now);
    }

    /// Removes `key`; its joiners hear `unavailable` naming the opener.
    pub(super) fn drop_key(&mut self, key: &str, now: Instant) {
        let Some(rv) = self.keys.remove(key) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&rv.opener) {
            s.opened_keys.remove(key);
        }
        let event = ServerMessage::Unavailable {
            key: key.to_string(),
            id: rv.opener.clone(),
            code: None,
        };
        for j in rv.joiners.keys() {
            if let Some(s) = self.sessions.get_mut(j) {
                s.joined_keys.remove(key);
            }
            let _ = self.deliver(j, &event, None, Kind::Queued, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Harness, ms};
    use serde_json::json;

    fn opener_and_joiner(h: &mut Harness) -> (u64, u64) {
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        let opened = h.request(a, json!({"type": "open-key", "rid": 2, "key": "key_a"}));
        assert_eq!(opened["type"], "key-opened");
        (a, b)
    }

    #[test]
    fn joiners_are_named_to_the_opener_and_leaving_is_announced() {
        let mut h = Harness::new();
        let (a, b) = opener_and_joiner(&mut h);
        let joined = h.request(b, json!({"type": "join-key", "rid": 3, "key": "key_a"}));
        assert_eq!(joined["opener"], "alice");
        assert_eq!(
            h.frames(a),
            vec![json!({"type": "joiner", "key": "key_a", "id": "bob"})]
        );
        h.request(b, json!({"type": "leave-key", "rid": 4, "key": "key_a"}));
        assert_eq!(h.frames(a)[0]["type"], "unavailable");
        let reply = h.request(b, json!({"type": "close-key", "rid": 5, "key": "key_a"}));
        assert_eq!(reply["code"], "not-opener");
        let reply = h.request(b, json!({"type": "open-key", "rid": 6, "key": "key_a"}));
        assert_eq!(reply["code"], "key-taken");
    }

    #[test]
    fn an_unjoined_key_closes_at_its_listen_deadline() {
        let mut h = Harness::new(); // listen 30 ms
        let (a, _) = opener_and_joiner(&mut h);
        h.sweep(ms(29));
        assert!(h.frames(a).is_empty());
        h.sweep(ms(30));
        let closed = h.frames(a);
        assert_eq!(closed[0]["type"], "key-closed");
        assert_eq!(closed[0]["code"], 4000);
        assert_eq!(h.hub.stats().keys, 0);
    }

    #[test]
    fn a_pair_ends_at_its_pipe_deadline_and_the_key_listens_again() {
        let mut h = Harness::new(); // pipe 40 ms, listen 30 ms
        let (a, b) = opener_and_joiner(&mut h);
        h.at(ms(10));
        h.request(b, json!({"type": "join-key", "rid": 3, "key": "key_a"}));
        h.frames(a);
        h.sweep(ms(45));
        assert!(
            h.frames(a).is_empty(),
            "a joined key has no listen deadline"
        );
        h.sweep(ms(50));
        assert_eq!(h.frames(a)[0]["code"], 4001);
        assert_eq!(h.frames(b)[0]["code"], 4001);
        h.sweep(ms(79));
        assert!(h.frames(a).is_empty());
        h.sweep(ms(80));
        assert_eq!(h.frames(a)[0]["type"], "key-closed");
    }

    #[test]
    fn keys_per_peer_are_bounded_and_released_with_the_id() {
        let mut h = Harness::new(); // 2 keys per peer
        let (a, b) = opener_and_joiner(&mut h);
        h.request(a, json!({"type": "open-key", "rid": 3, "key": "key_b"}));
        let reply = h.request(a, json!({"type": "open-key", "rid": 4, "key": "key_c"}));
        assert_eq!(reply["code"], "too-many-keys");
        h.request(b, json!({"type": "join-key", "rid": 5, "key": "key_a"}));
        h.drop_conn(a, true);
        let got = h.frames(b);
        assert_eq!(
            got[0],
            json!({"type": "unavailable", "key": "key_a", "id": "alice"})
        );
        assert_eq!(h.hub.stats().keys, 0);
    }
}
