//! Perfect negotiation: the decisions of the offer/answer exchange for one
//! RTCPeerConnection, without the RTCPeerConnection.
//!
//! Both sides may start negotiating at once ("glare"). Roles are fixed from
//! the two ids: the side whose id sorts **after** the other is *polite*. On
//! a collision the impolite side ignores the incoming offer, and the polite
//! side rolls its own offer back and answers. The result is one agreed
//! session, whichever side moved first.
//!
//! The glue (`web::rtc`) feeds every event into a [`Negotiator`] one at a
//! time, in order, and carries out what it returns:
//!
//! ```text
//!  negotiationneeded ──► on_negotiation_needed(state) ──► MakeOffer | Defer
//!  remote description ─► on_remote_description(kind, state)
//!                           ├─ Ignore                       (impolite, collision)
//!                           └─ Apply { answer }              (polite rolls back implicitly)
//!  remote description applied ─► remote_description_applied() ─► queued candidates to add
//!  remote candidate ───► on_remote_candidate(c) ─► Add(c) | Queued | Dropped | Overflow
//!  signaling state back to stable ─► take_deferred() ─► MakeOffer if one was deferred
//! ```
//!
//! Remote candidates that arrive before any remote description are queued
//! (bounded) and handed back once the description is applied, never dropped
//! — except those that belong to an offer this side chose to ignore.

use std::collections::VecDeque;

/// The RTCPeerConnection `signalingState`s that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalingState {
    Stable,
    HaveLocalOffer,
    HaveRemoteOffer,
    HaveLocalPranswer,
    HaveRemotePranswer,
    Closed,
}

impl SignalingState {
    /// From the browser's string.
    pub fn parse(s: &str) -> Self {
        match s {
            "stable" => Self::Stable,
            "have-local-offer" => Self::HaveLocalOffer,
            "have-remote-offer" => Self::HaveRemoteOffer,
            "have-local-pranswer" => Self::HaveLocalPranswer,
            "have-remote-pranswer" => Self::HaveRemotePranswer,
            _ => Self::Closed,
        }
    }
}

/// The `type` of a session description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    Offer,
    Answer,
    Pranswer,
    Rollback,
}

impl SdpKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "offer" => Self::Offer,
            "answer" => Self::Answer,
            "pranswer" => Self::Pranswer,
            "rollback" => Self::Rollback,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Pranswer => "pranswer",
            Self::Rollback => "rollback",
        }
    }
}

/// What to do with a remote description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDescription {
    /// Impolite side, colliding offer: drop it (the other side yields).
    Ignore,
    /// Set it as the remote description (rolling back a local offer if one is
    /// pending), then, if `answer`, create and send an answer.
    Apply { answer: bool },
}

/// What to do with a remote candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnCandidate<C> {
    /// Add it now.
    Add(C),
    /// Held until the remote description is applied.
    Queued,
    /// It belongs to an ignored offer: kept aside, tried once the
    /// remote's answer is applied (see `take_ignored`).
    Dropped,
    /// The queue is full; it was not kept.
    Overflow,
}

impl<C> OnCandidate<C> {
    /// The variant's name, for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Add(_) => "Add",
            Self::Queued => "Queued",
            Self::Dropped => "Dropped",
            Self::Overflow => "Overflow",
        }
    }
}

/// What to do about `negotiationneeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNegotiationNeeded {
    /// Create an offer, set it locally and send it.
    MakeOffer,
    /// Not stable now: offer once the state is stable again.
    Defer,
}

/// Candidates held before the remote description, at most.
pub const MAX_QUEUED_CANDIDATES: usize = 128;

/// The perfect-negotiation decisions for one connection.
#[derive(Debug)]
pub struct Negotiator<C> {
    polite: bool,
    ignore_offer: bool,
    has_remote_description: bool,
    deferred_offer: bool,
    queued: VecDeque<C>,
    /// Candidates that came with an offer this side ignored.
    ignored: VecDeque<C>,
}

/// Whether the side with `local` id is polite towards `remote`: the id that
/// sorts after the other is polite.
pub fn is_polite(local: &str, remote: &str) -> bool {
    local > remote
}

impl<C> Negotiator<C> {
    pub fn new(polite: bool) -> Self {
        Self {
            polite,
            ignore_offer: false,
            has_remote_description: false,
            deferred_offer: false,
            queued: VecDeque::new(),
            ignored: VecDeque::new(),
        }
    }

    pub fn polite(&self) -> bool {
        self.polite
    }

    pub fn on_negotiation_needed(&mut self, state: SignalingState) -> OnNegotiationNeeded {
        if state == SignalingState::Stable {
            self.deferred_offer = false;
            OnNegotiationNeeded::MakeOffer
        } else {
            self.deferred_offer = true;
            OnNegotiationNeeded::Defer
        }
    }

    /// Once stable again: whether a deferred offer should be made now.
    pub fn take_deferred(&mut self, state: SignalingState) -> bool {
        if self.deferred_offer && state == SignalingState::Stable {
            self.deferred_offer = false;
            true
        } else {
            false
        }
    }

    pub fn on_remote_description(&mut self, kind: SdpKind, state: SignalingState) -> OnDescription {
        // An answer with no offer out: a second answer to an offer sent
        // twice (an ICE restart sends it again when it may have been
        // lost). The browser would refuse it; it changes nothing.
        if kind == SdpKind::Answer && state == SignalingState::Stable {
            return OnDescription::Ignore;
        }
        let collision = kind == SdpKind::Offer && state != SignalingState::Stable;
        self.ignore_offer = !self.polite && collision;
        if self.ignore_offer {
            return OnDescription::Ignore;
        }
        OnDescription::Apply {
            answer: kind == SdpKind::Offer,
        }
    }

    /// The remote description is set: returns the queued candidates to add.
    pub fn remote_description_applied(&mut self) -> Vec<C> {
        self.has_remote_description = true;
        std::mem::take(&mut self.queued).into()
    }

    pub fn on_remote_candidate(&mut self, candidate: C) -> OnCandidate<C> {
        if self.ignore_offer {
            // Kept (bounded) in case the remote's answer reuses the ICE
            // credentials of the offer it rolled back: then these are its
            // only candidates.
            if self.ignored.len() < MAX_QUEUED_CANDIDATES {
                self.ignored.push_back(candidate);
            }
            return OnCandidate::Dropped;
        }
        if self.has_remote_description {
            return OnCandidate::Add(candidate);
        }
        if self.queued.len() >= MAX_QUEUED_CANDIDATES {
            return OnCandidate::Overflow;
        }
        self.queued.push_back(candidate);
        OnCandidate::Queued
    }

    /// Candidates of an ignored offer, to try (failures expected) once the
    /// remote's answer is applied.
    pub fn take_ignored(&mut self) -> Vec<C> {
        std::mem::take(&mut self.ignored).into()
    }

    /// Whether a failure to add a remote candidate should be reported: not
    /// when it belongs to an offer this side ignored.
    pub fn report_candidate_error(&self) -> bool {
        !self.ignore_offer
    }

    /// Candidates waiting for the remote description.
    pub fn queued_candidates(&self) -> usize {
        self.queued.len()
    }
}

#[cfg(test)]
mod tests {
    //! Two negotiators, each with a simulated RTCPeerConnection, exchanging
    //! signals through queues whose delivery order a seed decides.

    use super::*;
    use std::collections::VecDeque;

    #[derive(Debug, Clone, PartialEq)]
    enum Signal {
        Description(SdpKind, u32),
        Candidate(u32),
    }

    /// The parts of an RTCPeerConnection that negotiation touches.
    struct FakePc {
        state: SignalingState,
        next_offer: u32,
        local_offer: Option<u32>,
        remote_offer: Option<u32>,
        /// The offer both sides agreed on (set when an answer is applied or sent).
        agreed: Option<u32>,
        candidates_added: Vec<u32>,
    }

    impl FakePc {
        fn new(base: u32) -> Self {
            FakePc {
                state: SignalingState::Stable,
                next_offer: base,
                local_offer: None,
                remote_offer: None,
                agreed: None,
                candidates_added: vec![],
            }
        }
    }

    struct Side {
        name: &'static str,
        n: Negotiator<u32>,
        pc: FakePc,
        inbox: VecDeque<Signal>,
        errors: Vec<String>,
    }

    impl Side {
        fn new(name: &'static str, other: &'static str, base: u32) -> Self {
            Side {
                name,
                n: Negotiator::new(is_polite(name, other)),
                pc: FakePc::new(base),
                inbox: VecDeque::new(),
                errors: vec![],
            }
        }

        /// Runs negotiationneeded; returns signals to send.
        fn negotiation_needed(&mut self) -> Vec<Signal> {
            match self.n.on_negotiation_needed(self.pc.state) {
                OnNegotiationNeeded::MakeOffer => self.make_offer(),
                OnNegotiationNeeded::Defer => vec![],
            }
        }

        fn make_offer(&mut self) -> Vec<Signal> {
            self.pc.next_offer += 1;
            let offer = self.pc.next_offer;
            self.pc.local_offer = Some(offer);
            self.pc.state = SignalingState::HaveLocalOffer;
            // A local candidate gathered for this offer.
            vec![
                Signal::Description(SdpKind::Offer, offer),
                Signal::Candidate(offer),
            ]
        }

        fn receive(&mut self, s: Signal) -> Vec<Signal> {
            match s {
                Signal::Description(kind, offer) => {
                    match self.n.on_remote_description(kind, self.pc.state) {
                        OnDescription::Ignore => vec![],
                        OnDescription::Apply { answer } => {
                            match kind {
                                SdpKind::Offer => {
                                    // Implicit rollback of a pending local offer.
                                    self.pc.local_offer = None;
                                    self.pc.remote_offer = Some(offer);
                                    self.pc.state = SignalingState::HaveRemoteOffer;
                                }
                                SdpKind::Answer => {
                                    if self.pc.state != SignalingState::HaveLocalOffer
                                        || self.pc.local_offer != Some(offer)
                                    {
                                        self.errors.push(format!(
                                            "{}: answer {offer} in {:?}",
                                            self.name, self.pc.state
                                        ));
                                        return vec![];
                                    }
                                    self.pc.agreed = Some(offer);
                                    self.pc.local_offer = None;
                                    self.pc.state = SignalingState::Stable;
                                }
                                _ => unreachable!(),
                            }
                            for c in self.n.remote_description_applied() {
                                self.add_candidate(c);
                            }
                            let mut out = vec![];
                            if answer {
                                self.pc.agreed = Some(offer);
                                self.pc.remote_offer = None;
                                self.pc.state = SignalingState::Stable;
                                out.push(Signal::Description(SdpKind::Answer, offer));
                            }
                            if self.n.take_deferred(self.pc.state) {
                                out.extend(self.make_offer());
                            }
                            out
                        }
                    }
                }
                Signal::Candidate(c) => {
                    if let OnCandidate::Add(c) = self.n.on_remote_candidate(c) {
                        self.add_candidate(c);
                    }
                    vec![]
                }
            }
        }

        fn add_candidate(&mut self, c: u32) {
            // A candidate for a session that is not the current remote one fails.
            let current = self
                .pc
                .remote_offer
                .or(self.pc.agreed)
                .or(self.pc.local_offer);
            if current == Some(c) {
                self.pc.candidates_added.push(c);
            } else if self.n.report_candidate_error() {
                self.errors
                    .push(format!("{}: stale candidate {c}", self.name));
            }
        }
    }

    struct Rng(u64);
    impl Rng {
        fn coin(&mut self) -> bool {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 & 1 == 1
        }
    }

    /// Runs until both inboxes are empty, choosing at random which side
    /// receives next (each inbox stays in order, as the broker guarantees).
    fn run(a: &mut Side, b: &mut Side, rng: &mut Rng) {
        let mut steps = 0;
        while !a.inbox.is_empty() || !b.inbox.is_empty() {
            steps += 1;
            assert!(steps < 1000, "negotiation does not settle");
            let a_turn = if a.inbox.is_empty() {
                false
            } else if b.inbox.is_empty() {
                true
            } else {
                rng.coin()
            };
            let (from, to) = if a_turn {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            let s = from.inbox.pop_front().unwrap();
            let out = from.receive(s);
            to.inbox.extend(out);
        }
    }

    #[test]
    fn an_answer_with_no_offer_out_is_ignored_and_keeps_later_candidates() {
        let mut n: Negotiator<u32> = Negotiator::new(false);
        assert_eq!(
            n.on_remote_description(SdpKind::Answer, SignalingState::Stable),
            OnDescription::Ignore
        );
        n.remote_description_applied();
        assert_eq!(n.on_remote_candidate(7), OnCandidate::Add(7));
        assert_eq!(
            n.on_remote_description(SdpKind::Answer, SignalingState::HaveLocalOffer),
            OnDescription::Apply { answer: false }
        );
    }

    #[test]
    fn roles_come_from_id_order() {
        assert!(is_polite("bob", "alice"));
        assert!(!is_polite("alice", "bob"));
        assert_ne!(is_polite("x1", "x2"), is_polite("x2", "x1"));
    }

    #[test]
    fn one_side_offering_needs_no_tie_break() {
        let (mut a, mut b) = (
            Side::new("alice", "bob", 100),
            Side::new("bob", "alice", 200),
        );
        let out = a.negotiation_needed();
        b.inbox.extend(out);
        run(&mut a, &mut b, &mut Rng(1));
        assert_eq!(
            (a.pc.state, b.pc.state),
            (SignalingState::Stable, SignalingState::Stable)
        );
        assert_eq!((a.pc.agreed, b.pc.agreed), (Some(101), Some(101)));
        assert_eq!(b.pc.candidates_added, vec![101]);
        assert!(
            a.errors.is_empty() && b.errors.is_empty(),
            "{:?} {:?}",
            a.errors,
            b.errors
        );
    }

    /// Glare under every delivery order a few hundred seeds produce: both
    /// sides end stable on the same offer — the impolite side's — and no
    /// error is reported.
    #[test]
    fn simultaneous_offers_settle_on_the_impolite_offer() {
        for seed in 1..300u64 {
            let (mut a, mut b) = (
                Side::new("alice", "bob", 100),
                Side::new("bob", "alice", 200),
            );
            let from_a = a.negotiation_needed();
            let from_b = b.negotiation_needed();
            b.inbox.extend(from_a);
            a.inbox.extend(from_b);
            run(&mut a, &mut b, &mut Rng(seed * 7919));
            assert_eq!(
                (a.pc.state, b.pc.state),
                (SignalingState::Stable, SignalingState::Stable),
                "seed {seed}"
            );
            // alice < bob, so alice is impolite and her offer wins.
            assert_eq!(
                (a.pc.agreed, b.pc.agreed),
                (Some(101), Some(101)),
                "seed {seed}"
            );
            assert!(
                a.errors.is_empty() && b.errors.is_empty(),
                "seed {seed}: {:?} {:?}",
                a.errors,
                b.errors
            );
            assert_eq!(b.pc.candidates_added, vec![101], "seed {seed}");
        }
    }

    #[test]
    fn candidates_before_the_description_are_queued_then_added() {
        let mut n: Negotiator<&str> = Negotiator::new(true);
        assert_eq!(n.on_remote_candidate("c1"), OnCandidate::Queued);
        assert_eq!(n.on_remote_candidate("c2"), OnCandidate::Queued);
        assert_eq!(n.queued_candidates(), 2);
        assert_eq!(
            n.on_remote_description(SdpKind::Offer, SignalingState::Stable),
            OnDescription::Apply { answer: true }
        );
        assert_eq!(n.remote_description_applied(), vec!["c1", "c2"]);
        assert_eq!(n.on_remote_candidate("c3"), OnCandidate::Add("c3"));
    }

    #[test]
    fn the_candidate_queue_is_bounded() {
        let mut n: Negotiator<usize> = Negotiator::new(false);
        for i in 0..MAX_QUEUED_CANDIDATES {
            assert_eq!(n.on_remote_candidate(i), OnCandidate::Queued);
        }
        assert_eq!(n.on_remote_candidate(999), OnCandidate::Overflow);
    }

    #[test]
    fn an_impolite_side_drops_candidates_of_an_ignored_offer() {
        let mut n: Negotiator<u8> = Negotiator::new(false);
        assert_eq!(
            n.on_remote_description(SdpKind::Offer, SignalingState::HaveLocalOffer),
            OnDescription::Ignore
        );
        assert_eq!(n.on_remote_candidate(1), OnCandidate::Dropped);
        assert!(!n.report_candidate_error());
        // The answer to our own offer clears the flag.
        assert_eq!(
            n.on_remote_description(SdpKind::Answer, SignalingState::HaveLocalOffer),
            OnDescription::Apply { answer: false }
        );
        assert!(n.report_candidate_error());
    }

    #[test]
    fn renegotiation_while_busy_is_deferred_until_stable() {
        let mut n: Negotiator<u8> = Negotiator::new(true);
        assert_eq!(
            n.on_negotiation_needed(SignalingState::HaveRemoteOffer),
            OnNegotiationNeeded::Defer
        );
        assert!(!n.take_deferred(SignalingState::HaveRemoteOffer));
        assert!(n.take_deferred(SignalingState::Stable));
        assert!(!n.take_deferred(SignalingState::Stable));
    }
}
