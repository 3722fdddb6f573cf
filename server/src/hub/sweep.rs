//! Sweep: everything that happens because time passed, and nothing else.
//! Grace windows end (the id is released), rendezvous deadlines pass
//! (listen 4000, pipe 4001), room state keys expire, and relay intents the
//! other side never agreed to are dropped. The caller says
//! what time it is; the server calls this every `--sweep-ms`.

use std::time::Instant;

use peerwire::protocol::{RemovalReason, ServerMessage};

use super::State;

impl State {
    pub(super) fn sweep(&mut self, now: Instant) {
        self.end_grace_windows(now);
        self.end_restart_window(now);
        self.sweep_keys(now);
        self.expire_state(now);
        self.expire_relay_intents(now);
        self.end_overdue_handoffs(now);
    }

    /// Releases every detached id whose grace window has ended.
    fn end_grace_windows(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .detached
            .iter()
            .filter(|id| {
                self.sessions
                    .get(*id)
                    .and_then(|s| s.grace_deadline)
                    .is_none_or(|d| d <= now)
            })
            .cloned()
            .collect();
        for id in expired {
            self.release(&id, now);
        }
    }

    /// Rendezvous deadlines: listen timeouts (4000) and pipe deadlines (4001).
    fn sweep_keys(&mut self, now: Instant) {
        if self.config.listen_timeout.is_none() && self.config.pipe_timeout.is_none() {
            return;
        }
        let due = |d: &Option<Instant>| d.is_some_and(|d| d <= now);
        let mut closed = Vec::new();
        let mut ended = Vec::new();
        for (key, rv) in &self.keys {
            if due(&rv.listen_deadline) {
                closed.push(key.clone());
            }
            for (joiner, deadline) in &rv.joiners {
                if due(deadline) {
                    ended.push((key.clone(), joiner.clone()));
                }
            }
        }
        for (key, joiner) in ended {
            self.end_pipe(&key, &joiner, now);
        }
        for key in closed {
            self.expire_key(&key, now);
        }
    }

    /// Room state keys whose TTL ran out: members hear `state-removed`
    /// with reason `expired`.
    fn expire_state(&mut self, now: Instant) {
        let rooms: Vec<String> = self.ttl_rooms.iter().cloned().collect();
        for room in rooms {
            let Some(r) = self.rooms.get_mut(&room) else {
                self.ttl_rooms.remove(&room);
                continue;
            };
            let gone: Vec<String> = r
                .state
                .iter()
                .filter(|(_, v)| v.expires.is_some_and(|e| e <= now))
                .map(|(k, _)| k.clone())
                .collect();
            for k in &gone {
                r.state.remove(k);
            }
            if !r.state.values().any(|v| v.expires.is_some()) {
                self.ttl_rooms.remove(&room);
            }
            for key in gone {
                let event = ServerMessage::StateRemoved {
                    room: room.clone(),
                    key,
                    reason: RemovalReason::Expired,
                    from: None,
                };
                self.announce(&room, &event, None, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Harness, ms};
    use serde_json::json;

    #[test]
    fn one_sweep_ends_everything_due_and_nothing_early() {
        let mut h = Harness::new(); // grace 100, listen 30, TTLs as set
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        h.request(a, json!({"type": "join", "rid": 2, "room": "r"}));
        h.request(b, json!({"type": "join", "rid": 2, "room": "r"}));
        h.send(
            b,
            json!({"type": "set", "rid": 3, "room": "r", "key": "k", "value": 0, "ttlMs": 20}),
        );
        h.request(a, json!({"type": "open-key", "rid": 4, "key": "key_a"}));
        h.drop_conn(a, false);
        h.frames(b);
        h.sweep(ms(19));
        assert!(h.frames(b).is_empty());
        assert_eq!(h.hub.stats().detached, 1);
        h.sweep(ms(100));
        let types: Vec<_> = h.frames(b).iter().map(|f| f["type"].clone()).collect();
        assert_eq!(types, vec![json!("peer-left"), json!("state-removed")]);
        assert_eq!(h.hub.stats().detached, 0);
        h.drop_conn(b, true);
        assert!(h.hub.is_idle());
    }

    #[test]
    fn sweeping_an_idle_hub_is_harmless() {
        let h = Harness::new();
        h.hub.sweep(h.base);
        h.hub.sweep(h.base + std::time::Duration::from_secs(3600));
        assert!(h.hub.is_idle());
    }
}
