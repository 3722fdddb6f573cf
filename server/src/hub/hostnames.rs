//! Hostnames: names an id registers for itself (smoke's hub hostnames),
//! so that a node can be reached by name.
//!
//! A hostname is owned by the id that registered it. Registering is one
//! check-and-insert under the hub's lock, so two ids racing for a name
//! cannot both get it; only the owner may register it again (a no-op), and
//! nobody can take or remove it from the owner. It is released with the id
//! (a clean close, or the end of its grace window), not while the id is
//! detached inside the window, so it survives a resume. An id holds at most
//! `max_hostnames_per_peer` names.

use std::collections::BTreeSet;

use peerwire::protocol::ErrorCode;
use peerwire::protocol::ServerMessage;
use peerwire::protocol::messages::Rid;

use super::{Answer, State, internal};

impl State {
    /// `me` takes `hostname`.
    pub(super) fn register_hostname(&mut self, me: &str, rid: Rid, hostname: String) -> Answer {
        match self.hostnames.get(&hostname) {
            Some(owner) if owner == me => return Ok(ServerMessage::Ok { rid }),
            Some(owner) => {
                let detail = format!("hostname {hostname:?} belongs to {owner:?}");
                return Err((ErrorCode::HostnameTaken, rid, detail));
            }
            None => {}
        }
        let max = self.config.max_hostnames_per_peer;
        let Some(session) = self.sessions.get_mut(me) else {
            return Err(internal(rid, "register-hostname without a session"));
        };
        if session.hostnames.len() >= max {
            let detail = format!("already holding {} hostnames", session.hostnames.len());
            return Err((ErrorCode::TooManyHostnames, rid, detail));
        }
        session.hostnames.insert(hostname.clone());
        self.hostnames.insert(hostname, me.to_string());
        Ok(ServerMessage::Ok { rid })
    }

    /// Who holds `hostname`.
    pub(super) fn lookup_hostname(&self, rid: Rid, hostname: String) -> Answer {
        match self.hostnames.get(&hostname) {
            Some(id) => Ok(ServerMessage::FoundHost {
                rid,
                id: id.clone(),
                hostname,
            }),
            None => Err((
                ErrorCode::UnknownHost,
                rid,
                format!("no id holds hostname {hostname:?}"),
            )),
        }
    }

    /// Gives back the hostnames of released id `peer`.
    pub(super) fn drop_hostnames(&mut self, peer: &str, names: &BTreeSet<String>) {
        for name in names {
            if self.hostnames.get(name).is_some_and(|owner| owner == peer) {
                self.hostnames.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Harness, ms};
    use serde_json::{Value, json};

    fn register(h: &mut Harness, conn: u64, hostname: &str) -> Value {
        h.request(
            conn,
            json!({"type": "register-hostname", "rid": 9, "hostname": hostname}),
        )
    }

    fn lookup(h: &mut Harness, conn: u64, hostname: &str) -> Value {
        h.request(
            conn,
            json!({"type": "lookup-hostname", "rid": 10, "hostname": hostname}),
        )
    }

    #[test]
    fn a_hostname_belongs_to_its_first_registrant_only() {
        let mut h = Harness::new();
        let (a, b) = (h.connect(), h.connect());
        h.register(a, "alice");
        h.register(b, "bob");
        assert_eq!(
            register(&mut h, a, "printer"),
            json!({"type": "ok", "rid": 9})
        );
        assert_eq!(
            register(&mut h, a, "printer")["type"],
            "ok",
            "again: a no-op"
        );
        let taken = register(&mut h, b, "printer");
        assert_eq!(taken["code"], "hostname-taken");
        assert_eq!(
            lookup(&mut h, b, "printer"),
            json!({"type": "found-host", "rid": 10, "hostname": "printer", "id": "alice"})
        );
        assert_eq!(lookup(&mut h, b, "scanner")["code"], "unknown-host");
        assert_eq!(h.hub.stats().hostnames, 1);
    }

    #[test]
    fn invalid_names_and_unregistered_connections_are_refused() {
        let mut h = Harness::new();
        let a = h.connect();
        assert_eq!(register(&mut h, a, "printer")["code"], "not-registered");
        h.register(a, "alice");
        assert_eq!(register(&mut h, a, ".hidden")["code"], "invalid-hostname");
        assert_eq!(lookup(&mut h, a, "has space")["code"], "invalid-hostname");
    }

    #[test]
    fn an_id_holds_a_bounded_number_of_hostnames() {
        let mut h = Harness::new(); // 2 per id
        let a = h.connect();
        h.register(a, "alice");
        register(&mut h, a, "one");
        register(&mut h, a, "two");
        assert_eq!(register(&mut h, a, "three")["code"], "too-many-hostnames");
        assert_eq!(
            register(&mut h, a, "two")["type"],
            "ok",
            "held ones still re-register"
        );
    }

    #[test]
    fn hostnames_survive_the_grace_window_and_go_with_the_id() {
        let mut h = Harness::new(); // grace 100 ms
        let (a, b) = (h.connect(), h.connect());
        let token = h.register(a, "alice");
        h.register(b, "bob");
        register(&mut h, a, "printer");
        h.drop_conn(a, false);
        h.sweep(ms(50));
        assert_eq!(register(&mut h, b, "printer")["code"], "hostname-taken");
        let a2 = h.connect();
        h.request(
            a2,
            json!({"type": "register", "rid": 1, "id": "alice", "resumeToken": token}),
        );
        h.frames(a2);
        assert_eq!(
            lookup(&mut h, b, "printer")["id"],
            "alice",
            "kept across the resume"
        );
        h.drop_conn(a2, false);
        h.sweep(ms(149));
        assert_eq!(h.hub.stats().hostnames, 1, "still inside the new window");
        h.sweep(ms(150));
        assert_eq!(lookup(&mut h, b, "printer")["code"], "unknown-host");
        assert_eq!(
            register(&mut h, b, "printer")["type"],
            "ok",
            "free for another id"
        );
    }

    #[test]
    fn a_clean_close_frees_the_hostnames_at_once() {
        let mut h = Harness::new();
        let a = h.connect();
        h.register(a, "alice");
        register(&mut h, a, "printer");
        h.drop_conn(a, true);
        assert!(h.hub.is_idle());
    }
}
