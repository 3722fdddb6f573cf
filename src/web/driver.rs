//! The driver: one per peer. It owns the engine and the browser objects
//! (the broker WebSocket, RTCPeerConnections, data channels, the hub link,
//! the timer) by the engine's ids, feeds their events to the engine, carries
//! out what the engine decides, and hands the engine's events to the
//! JavaScript side ([`Sink`]).
//!
//! Every entry point follows the same three steps:
//!
//! 1. borrow the engine, give it the input or command, let the borrow go;
//! 2. carry out its transmits and actions (no engine borrow held, so a
//!    browser call that reports back at once is just another input);
//! 3. emit its events, in order, with nothing borrowed: a listener may call
//!    any method. An input that arrives while events are being emitted
//!    queues its own events behind them.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::RtcDataChannel;

use super::cell::StateCell;
use super::channel::DcLink;
use super::page::Listener;
use super::rtc::{self, PcLink};
use super::socket::BrokerSocket;
use super::{js_error_text, now};
use crate::core::engine::{
    Action, ChanId, ConnId, Engine, Event, Millis, OpId, Reply, Table, Transmit,
};
use crate::core::error::PeerError;

#[wasm_bindgen::prelude::wasm_bindgen(module = "/src/web/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = watchIce)]
    fn watch_ice(pc: &web_sys::RtcPeerConnection, prefix: &str);
}

// Calls and tracks (the `media` feature): a lite build has no senders,
// ignores the remote's tracks and never sees `AddTrack` / `RemoveTrack`.
#[cfg(feature = "media")]
mod media;

/// Where the engine's events go: the JavaScript handles' listeners.
pub trait Sink {
    /// One event. Nothing of the driver is borrowed while this runs.
    fn deliver(self: Rc<Self>, driver: &Rc<Driver>, event: Event);

    /// What a Promise started by [`Driver::ask`] settles with: the JS value
    /// of the outcome (`Ok` resolves, `Err` rejects), as `then` says.
    fn settle(
        self: Rc<Self>,
        then: Then,
        result: Result<Reply, PeerError>,
    ) -> Result<JsValue, JsValue>;
}

/// What the sink makes of an outcome that settles a Promise ([`Driver::ask`]).
pub enum Then {
    /// The reply as its JS value (a handle, a boolean, `undefined`).
    Reply,
    /// The new peer's handle (`createPeer`); a failure closes its engine.
    Peer,
    /// Sends `message` on the connection the reply names (`peer.send`):
    /// settles as that send does.
    Send {
        message: JsValue,
        progress: Option<Function>,
    },
    /// `undefined`, once the rendezvous key's listeners are dropped
    /// (`Rendezvous.close`).
    ForgetKey(String),
    /// `peer.call()` answered: sends `stream`'s tracks on the connection
    /// the reply names, then resolves it.
    #[cfg(feature = "media")]
    Call { stream: JsValue },
}

/// Where the broker access token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    Fixed(String),
    /// Called before every connect; returns a string or a Promise of one.
    Provider(Function),
}

/// What the driver owns in the browser.
#[derive(Default)]
struct Io {
    socket: Option<BrokerSocket>,
    pcs: Table<ConnId, PcLink>,
    dcs: Table<ChanId, DcLink>,
    /// Each connection's own channel (kept until its close event).
    mains: Table<ChanId, ()>,
    chan_conn: Table<ChanId, ConnId>,
    hub_deliver: Option<Closure<dyn FnMut(JsValue, JsValue)>>,
    timer: Option<gloo_timers::callback::Timeout>,
    /// `pagehide`, and the network change events.
    listeners: Vec<Listener>,
    /// Tracks this side sends, and the remote's it receives (`media`).
    #[cfg(feature = "media")]
    media: media::MediaIo,
}

/// Who waits for a command's outcome.
enum Waiter {
    /// A Rust future ([`Driver::call`], [`Driver::begin`]).
    #[cfg(feature = "full")]
    Task(oneshot::Sender<Result<Reply, PeerError>>),
    /// A JS Promise ([`Driver::ask`]): settled when the outcome is emitted,
    /// with no Rust future per call. The sink (the handles' context, which
    /// owns this driver) is held until then, as a future would hold it:
    /// `createPeer` has no other owner before it resolves.
    Promise {
        resolve: Function,
        reject: Function,
        then: Then,
        sink: Option<Rc<dyn Sink>>,
    },
}

/// The outcome of a command, once the engine reports it.
pub type Outcome = oneshot::Receiver<Result<Reply, PeerError>>;

/// One peer's engine and browser objects.
pub struct Driver {
    engine: StateCell<Engine>,
    io: StateCell<Io>,
    /// Who waits for each operation, in id order. A ring, not a `Table`:
    /// operations mostly finish in the order they started, and taking the
    /// oldest of 20 000 pending sends out of a vector moved all the others
    /// (a burst of small sends was quadratic).
    waiters: StateCell<VecDeque<(OpId, Waiter)>>,
    progress: StateCell<Table<OpId, Function>>,
    queue: StateCell<VecDeque<Event>>,
    emitting: Cell<bool>,
    /// A microtask will send the small messages of this turn.
    deferred_armed: Cell<bool>,
    timer_at: Cell<Millis>,
    sink: StateCell<Option<Weak<dyn Sink>>>,
    token: Option<TokenSource>,
    /// The JS hub object of a Node (none on the broker).
    hub: Option<JsValue>,
    platform: super::Platform,
    me: Weak<Driver>,
}

/// A boxed future for [`promise`].
pub type Job = Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>;

/// One non-generic path from a future to a Promise (one instance of the
/// glue for every exported method).
pub fn promise(job: Job) -> Promise {
    wasm_bindgen_futures::future_to_promise(job)
}

impl Driver {
    /// A driver for `engine`; `start` it once its sink is set.
    pub fn new(
        engine: Engine,
        token: Option<TokenSource>,
        hub: Option<JsValue>,
        platform: super::Platform,
    ) -> Rc<Self> {
        Rc::new_cyclic(|me| Self {
            engine: StateCell::new(engine),
            io: StateCell::new(Io::default()),
            waiters: StateCell::new(VecDeque::new()),
            progress: StateCell::new(Table::new()),
            queue: StateCell::new(VecDeque::new()),
            emitting: Cell::new(false),
            deferred_armed: Cell::new(false),
            timer_at: Cell::new(f64::INFINITY),
            sink: StateCell::new(None),
            token,
            hub,
            platform,
            me: me.clone(),
        })
    }

    /// Where events go (the handles' shared context, which owns the driver).
    pub fn set_sink(&self, sink: Weak<dyn Sink>) {
        *self.sink.borrow_mut() = Some(sink);
    }

    /// Registers (or attaches to the hub); the Promise settles once the id
    /// is known, as `then` says.
    pub fn start(self: &Rc<Self>, then: Then) -> Promise {
        self.listen_to_the_page();
        self.ask(|e, now| Ok(e.start(now)), None, then)
    }

    /// Like [`Driver::start`], with nobody waiting: the outcome reaches
    /// later calls through `Engine::when_ready` (a `Node`).
    pub fn start_detached(self: &Rc<Self>) {
        self.listen_to_the_page();
        self.run(|e, now| {
            e.start(now);
        });
    }

    fn listen_to_the_page(self: &Rc<Self>) {
        let weak = self.me.clone();
        let closes = move || {
            if let Some(d) = weak.upgrade() {
                // The page goes away: say goodbye, so remotes see `close`
                // and the broker releases the id and rooms at once.
                d.input(|e, now| e.close(now));
            }
        };
        let weak = self.me.clone();
        let changed = move || {
            if let Some(d) = weak.upgrade() {
                d.input(|e, now| e.handle_network_change(now));
            }
        };
        let listeners = [
            Listener::on_window("pagehide", closes),
            // Not `navigator.connection`'s `change`: it also fires when
            // the browser's estimate of the bandwidth or RTT moves.
            Listener::on_window("online", changed),
        ];
        self.io.borrow_mut().listeners = listeners.into_iter().flatten().collect();
    }

    // ---- the three steps --------------------------------------------------

    /// Feeds an input to the driver behind `weak`, if it is still there.
    pub fn feed(weak: &Weak<Driver>, f: impl FnOnce(&mut Engine, Millis)) {
        if let Some(d) = weak.upgrade() {
            d.input(f);
        }
    }

    /// Gives the engine an input, then carries out and emits what follows.
    pub fn input(self: &Rc<Self>, f: impl FnOnce(&mut Engine, Millis)) {
        {
            let mut engine = self.engine.borrow_mut();
            f(&mut engine, now());
        }
        self.flush();
    }

    /// Runs a command that returns at once (a getter, or a command whose
    /// outcome is not awaited).
    pub fn run<R>(self: &Rc<Self>, f: impl FnOnce(&mut Engine, Millis) -> R) -> R {
        let r = {
            let mut engine = self.engine.borrow_mut();
            f(&mut engine, now())
        };
        self.flush();
        r
    }

    /// Reads the engine (never hold the result across user code).
    pub fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        f(&self.engine.borrow())
    }

    /// Runs a command and waits for its outcome. Only the call of `f` is
    /// generic; the waiting is one future type for every command.
    #[cfg(feature = "full")] // rest and Node
    pub fn call<F>(self: &Rc<Self>, f: F) -> impl Future<Output = Result<Reply, PeerError>> + use<F>
    where
        F: FnOnce(&mut Engine, Millis) -> Result<OpId, PeerError>,
    {
        outcome(self.begin(f, None).map(|(_, rx)| rx))
    }

    /// Starts a command; its outcome arrives on the returned receiver.
    /// `progress` is called with `(sent, total)` as the engine reports it.
    #[cfg(feature = "full")] // rest and Node
    pub fn begin(
        self: &Rc<Self>,
        f: impl FnOnce(&mut Engine, Millis) -> Result<OpId, PeerError>,
        progress: Option<Function>,
    ) -> Result<(OpId, Outcome), PeerError> {
        let ((), op, rx) = self.begin_with(|e, now| f(e, now).map(|op| ((), op)), progress)?;
        Ok((op, rx))
    }

    /// Like [`Driver::begin`], for a command that also returns a value (the
    /// channel of a socket being opened).
    #[cfg(feature = "full")] // rest and Node
    pub fn begin_with<T>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut Engine, Millis) -> Result<(T, OpId), PeerError>,
        progress: Option<Function>,
    ) -> Result<(T, OpId, Outcome), PeerError> {
        let started = {
            let mut engine = self.engine.borrow_mut();
            f(&mut engine, now())
        };
        match started {
            Ok((value, op)) => Ok((value, op, self.register(op, progress))),
            Err(e) => {
                self.flush();
                Err(e)
            }
        }
    }

    /// Registers the waiter of `op`, then carries out what the command
    /// produced. Registered first, so an outcome produced at once still
    /// finds its waiter.
    #[cfg(feature = "full")]
    fn register(self: &Rc<Self>, op: OpId, progress: Option<Function>) -> Outcome {
        let (tx, rx) = oneshot::channel();
        self.wait(op, Waiter::Task(tx), progress);
        rx
    }

    fn wait(self: &Rc<Self>, op: OpId, waiter: Waiter, progress: Option<Function>) {
        {
            let mut waiters = self.waiters.borrow_mut();
            // Ids grow, so this is nearly always the end.
            let at = waiters.partition_point(|(o, _)| *o < op);
            waiters.insert(at, (op, waiter));
        }
        if let Some(p) = progress {
            self.progress.borrow_mut().insert(op, p);
        }
        self.flush();
    }

    /// Runs a command and returns a Promise that its outcome settles, as
    /// `then` says ([`Sink::settle`]). Only the call of `f` is generic: no
    /// future, no task, no state machine per method.
    pub fn ask(
        self: &Rc<Self>,
        f: impl FnOnce(&mut Engine, Millis) -> Result<OpId, PeerError>,
        progress: Option<Function>,
        then: Then,
    ) -> Promise {
        let started = {
            let mut engine = self.engine.borrow_mut();
            f(&mut engine, now())
        };
        self.ask_started(started, progress, then)
    }

    fn ask_started(
        self: &Rc<Self>,
        started: Result<OpId, PeerError>,
        progress: Option<Function>,
        then: Then,
    ) -> Promise {
        let mut functions = None;
        let promise = Promise::new(&mut |resolve, reject| functions = Some((resolve, reject)));
        let Some((resolve, reject)) = functions else {
            return promise;
        };
        let waiter = Waiter::Promise {
            resolve,
            reject,
            then,
            sink: self.sink.borrow().as_ref().and_then(Weak::upgrade),
        };
        match started {
            Ok(op) => self.wait(op, waiter, progress),
            Err(e) => {
                self.flush();
                self.settle(waiter, Err(e));
            }
        }
        promise
    }

    /// Hands an outcome to its waiter.
    fn settle(self: &Rc<Self>, waiter: Waiter, result: Result<Reply, PeerError>) {
        match waiter {
            #[cfg(feature = "full")]
            Waiter::Task(tx) => {
                let _ = tx.send(result);
            }
            Waiter::Promise {
                resolve,
                reject,
                then,
                sink,
            } => {
                let settled = match sink {
                    Some(sink) => sink.settle(then, result),
                    None => Ok(JsValue::UNDEFINED),
                };
                let _ = match settled {
                    Ok(v) => resolve.call1(&JsValue::UNDEFINED, &v),
                    Err(e) => reject.call1(&JsValue::UNDEFINED, &e),
                };
            }
        }
    }

    /// Carries out everything the engine produced, then emits its events.
    fn flush(self: &Rc<Self>) {
        loop {
            let (transmits, actions) = {
                let mut engine = self.engine.borrow_mut();
                let mut transmits = Vec::new();
                while let Some(t) = engine.poll_transmit() {
                    transmits.push(t);
                }
                let mut actions = Vec::new();
                while let Some(a) = engine.poll_action() {
                    actions.push(a);
                }
                let mut queue = self.queue.borrow_mut();
                while let Some(e) = engine.poll_event() {
                    queue.push_back(e);
                }
                (transmits, actions)
            };
            if transmits.is_empty() && actions.is_empty() {
                break;
            }
            let mut touched: Vec<ChanId> = Vec::new();
            for t in transmits {
                self.transmit(t, &mut touched);
            }
            for a in actions {
                self.act(a);
            }
            // Tell the engine how full each channel is now, so it sends
            // more while the window allows.
            let amounts: Vec<(ChanId, usize)> = {
                let io = self.io.borrow();
                touched
                    .iter()
                    .filter_map(|c| io.dcs.get(c).map(|d| (*c, d.buffered())))
                    .collect()
            };
            if !amounts.is_empty() {
                let mut engine = self.engine.borrow_mut();
                let t = now();
                for (chan, amount) in amounts {
                    engine.handle_buffered(chan, amount, t);
                }
            }
        }
        self.arm_deferred();
        self.arm_timer();
        self.after_close();
        self.emit();
    }

    /// Small messages sent in this turn wait in the engine to be batched:
    /// one microtask, queued by the first of them, sends them all.
    fn arm_deferred(self: &Rc<Self>) {
        if self.deferred_armed.get() || !self.engine.borrow().has_deferred() {
            return;
        }
        self.deferred_armed.set(true);
        let weak = self.me.clone();
        spawn_local(async move {
            if let Some(d) = weak.upgrade() {
                d.deferred_armed.set(false);
                d.input(|e, now| e.pump_deferred(now));
            }
        });
    }

    fn emit(self: &Rc<Self>) {
        if self.emitting.replace(true) {
            return;
        }
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(event) = next else { break };
            match event {
                Event::Done { op, result } => {
                    self.progress.borrow_mut().remove(&op);
                    let waiter = {
                        let mut waiters = self.waiters.borrow_mut();
                        match waiters.binary_search_by_key(&op, |(o, _)| *o) {
                            Ok(i) => waiters.remove(i).map(|(_, w)| w),
                            Err(_) => None,
                        }
                    };
                    if let Some(w) = waiter {
                        self.settle(w, result);
                    }
                }
                Event::Progress { op, sent, total } => {
                    let f = self.progress.borrow().get(&op).cloned();
                    if let Some(f) = f {
                        let _ = f.call2(
                            &JsValue::UNDEFINED,
                            &(sent as f64).into(),
                            &(total as f64).into(),
                        );
                    }
                }
                other => {
                    let sink = self.sink.borrow().as_ref().and_then(Weak::upgrade);
                    if let Some(sink) = sink {
                        sink.deliver(self, other);
                    }
                }
            }
        }
        self.emitting.set(false);
    }

    /// Wakes the engine at its next deadline. A later deadline leaves the
    /// armed timer alone (it fires early and re-arms), so busy channels do
    /// not reset a browser timer per frame.
    fn arm_timer(self: &Rc<Self>) {
        let next = self.engine.borrow().poll_timeout();
        let Some(at) = next else {
            self.io.borrow_mut().timer = None;
            self.timer_at.set(f64::INFINITY);
            return;
        };
        let armed = self.timer_at.get();
        if self.io.borrow().timer.is_some() && armed <= at {
            return;
        }
        // setTimeout wraps past 2³¹ − 1 ms and fires at once; a deadline
        // further off wakes the engine early, and the timer is set again.
        let delay = (at - now()).clamp(0.0, i32::MAX as f64) as u32;
        let weak = self.me.clone();
        let timer = gloo_timers::callback::Timeout::new(delay, move || {
            if let Some(d) = weak.upgrade() {
                d.timer_at.set(f64::INFINITY);
                d.io.borrow_mut().timer = None;
                d.input(|e, now| e.handle_timeout(now));
            }
        });
        self.timer_at.set(at);
        self.io.borrow_mut().timer = Some(timer);
    }

    // ---- carrying out -----------------------------------------------------

    fn transmit(self: &Rc<Self>, t: Transmit, touched: &mut Vec<ChanId>) {
        match t {
            Transmit::Broker(text) => {
                if let Some(s) = self.io.borrow().socket.as_ref() {
                    s.send(&text);
                }
            }
            Transmit::BrokerBinary(bytes) => {
                if let Some(s) = self.io.borrow().socket.as_ref() {
                    s.send_bytes(&bytes);
                }
            }
            Transmit::Frame { chan, bytes } => {
                let result = self.io.borrow().dcs.get(&chan).map(|d| d.send(&bytes));
                match result {
                    // A handful of channels per flush: a scan beats a sort
                    // (and keeps the sort's code out of the wasm).
                    Some(Ok(())) if !touched.contains(&chan) => touched.push(chan),
                    Some(Ok(())) => {}
                    Some(Err(text)) => self.later(move |e, now| {
                        e.handle_channel_error(chan, &text, now);
                    }),
                    None => {}
                }
            }
            #[cfg(feature = "full")]
            Transmit::HubSignal { to, data } => self.hub_send(to, data),
            // Only a Node has a hub (the full build).
            #[cfg(not(feature = "full"))]
            Transmit::HubSignal { .. } => {}
        }
    }

    /// An input that must wait until the current one is carried out.
    fn later(self: &Rc<Self>, f: impl FnOnce(&mut Engine, Millis) + 'static) {
        let weak = self.me.clone();
        spawn_local(async move { Driver::feed(&weak, f) });
    }

    fn act(self: &Rc<Self>, action: Action) {
        match action {
            Action::DialBroker { url, generation } => self.dial(url, generation),
            Action::CloseBroker { code, reason } => {
                let socket = self.io.borrow_mut().socket.take();
                if let Some(s) = socket {
                    s.close(code, &reason);
                }
            }
            #[cfg(feature = "full")]
            Action::AttachHub => self.attach_hub(),
            #[cfg(feature = "full")]
            Action::DetachHub => {
                let address = self.read(|e| e.id().map(str::to_string));
                self.io.borrow_mut().hub_deliver = None;
                if let (Some(hub), Some(address)) = (self.hub.clone(), address) {
                    spawn_local(async move {
                        let _ = call_js(&hub, "detach", &[address.into()]).await;
                    });
                }
            }
            #[cfg(not(feature = "full"))]
            Action::AttachHub | Action::DetachHub => {}
            Action::CreateConnection {
                conn,
                chan,
                ice_servers,
                policy,
                low_water,
            } => match PcLink::new(self.me.clone(), conn, &ice_servers, policy, &self.platform) {
                Ok((pc, dc)) => {
                    self.watch_ice(conn, &pc.pc);
                    let link = DcLink::new(self.me.clone(), chan, dc, low_water);
                    let mut io = self.io.borrow_mut();
                    io.pcs.insert(conn, pc);
                    io.dcs.insert(chan, link);
                    io.mains.insert(chan, ());
                    io.chan_conn.insert(chan, conn);
                }
                Err(reason) => self.later(move |e, now| e.handle_rtc_failed(conn, &reason, now)),
            },
            Action::RestartIce { conn } => {
                if let Some(pc) = self.pc(conn) {
                    rtc::restart_ice(&pc);
                }
            }
            Action::SetLocalDescription { conn } => {
                let Some(pc) = self.pc(conn) else { return };
                let weak = self.me.clone();
                spawn_local(async move {
                    let result = rtc::set_local(pc.clone()).await;
                    let Some(d) = weak.upgrade() else { return };
                    #[cfg(feature = "media")]
                    let mids = d.sender_mids(conn, &pc);
                    #[cfg(not(feature = "media"))]
                    let mids = Vec::new();
                    d.input(|e, now| {
                        e.handle_sender_mids(conn, mids);
                        e.handle_local_description(conn, result, now)
                    });
                });
            }
            Action::SetRemoteDescription {
                conn,
                sdp_type,
                sdp,
            } => {
                let Some(pc) = self.pc(conn) else { return };
                let weak = self.me.clone();
                spawn_local(async move {
                    let result = rtc::set_remote(pc, sdp_type, sdp).await;
                    Driver::feed(&weak, |e, now| {
                        e.handle_remote_description(conn, result, now)
                    });
                });
            }
            Action::AddCandidate { conn, candidate } => {
                let Some(pc) = self.pc(conn) else { return };
                let weak = self.me.clone();
                spawn_local(async move {
                    let result = rtc::add_candidate(pc, candidate).await;
                    Driver::feed(&weak, |e, now| e.handle_candidate_added(conn, result, now));
                });
            }
            Action::CreateChannel {
                conn,
                chan,
                label,
                policy,
                low_water,
            } => {
                let Some(pc) = self.pc(conn) else { return };
                let dc = pc
                    .create_data_channel_with_data_channel_dict(&label, &rtc::channel_init(policy));
                let link = DcLink::new(self.me.clone(), chan, dc, low_water);
                let old = {
                    let mut io = self.io.borrow_mut();
                    io.chan_conn.insert(chan, conn);
                    io.dcs.insert(chan, link)
                };
                // A socket opened again (`reopen_dialer`): its first data
                // channel closes only now, so the new one got another
                // stream id. Dropping unsets its handlers.
                drop(old);
            }
            Action::CloseChannel { chan } => {
                let mut io = self.io.borrow_mut();
                if io.mains.contains_key(&chan) {
                    // Its close event releases the connection.
                    if let Some(d) = io.dcs.get(&chan) {
                        d.close();
                    }
                } else {
                    io.chan_conn.remove(&chan);
                    // Dropping unsets the handlers and closes the channel.
                    let link = io.dcs.remove(&chan);
                    drop(io);
                    drop(link);
                }
            }
            #[cfg(feature = "media")]
            Action::AddTrack { conn, track, .. } => self.add_track(conn, track),
            #[cfg(feature = "media")]
            Action::RemoveTrack { conn, track } => self.remove_track(conn, track),
            // The engine sends no track without the `media` feature.
            #[cfg(not(feature = "media"))]
            Action::AddTrack { .. } | Action::RemoveTrack { .. } => {}
            Action::ReleaseConnection { conn } => {
                let (pc, links) = {
                    let mut io = self.io.borrow_mut();
                    #[cfg(feature = "media")]
                    io.media.release(conn);
                    let chans: Vec<ChanId> = io
                        .chan_conn
                        .iter()
                        .filter(|(_, c)| **c == conn)
                        .map(|(ch, _)| *ch)
                        .collect();
                    let mut links = Vec::new();
                    for ch in chans {
                        io.chan_conn.remove(&ch);
                        io.mains.remove(&ch);
                        links.extend(io.dcs.remove(&ch));
                    }
                    (io.pcs.remove(&conn), links)
                };
                drop(links);
                drop(pc);
            }
        }
    }

    /// With `debug` at `'info'` or above: the ICE states and candidate
    /// errors of `conn` go to the console (helpers.js), where the engine, which
    /// follows `connectionState`, would not see them.
    fn watch_ice(&self, conn: ConnId, pc: &web_sys::RtcPeerConnection) {
        let (level, prefix) = self.read(|e| {
            let id = e.id().unwrap_or_default();
            let remote = e.conn_remote(conn).unwrap_or_default();
            let prefix = format!("peerwire {id}: {conn} (with \"{remote}\")");
            (e.config().debug, prefix)
        });
        if level >= crate::core::engine::LogLevel::Info {
            watch_ice(pc, &prefix);
        }
    }

    /// The RTCPeerConnection of `conn`, while it has one.
    pub fn pc(&self, conn: ConnId) -> Option<web_sys::RtcPeerConnection> {
        self.io.borrow().pcs.get(&conn).map(|p| p.pc.clone())
    }

    /// The remote opened a channel on `conn`.
    pub fn incoming_channel(self: &Rc<Self>, conn: ConnId, dc: RtcDataChannel) {
        let label = dc.label();
        let chan = self.run(|e, now| e.handle_incoming_channel(conn, &label, now));
        let Some(chan) = chan else {
            dc.close();
            return;
        };
        let low = self.read(|e| e.config().window.low);
        let link = DcLink::new(self.me.clone(), chan, dc, low);
        let open = link.is_open();
        {
            let mut io = self.io.borrow_mut();
            io.dcs.insert(chan, link);
            io.chan_conn.insert(chan, conn);
        }
        if open {
            self.input(|e, now| e.handle_channel_open(chan, now));
        }
    }

    fn dial(self: &Rc<Self>, url: String, generation: u64) {
        // The previous socket (if any) goes; its late events are ignored.
        self.io.borrow_mut().socket = None;
        match self.token.clone() {
            None => self.open_socket(&url, generation),
            Some(TokenSource::Fixed(token)) => {
                self.open_socket(&with_token(&url, &token), generation)
            }
            Some(TokenSource::Provider(f)) => {
                // A fresh token for every connect: the app's server can mint
                // short-lived ones.
                let weak = self.me.clone();
                spawn_local(async move {
                    let token = ask_for_token(&f).await;
                    let Some(d) = weak.upgrade() else { return };
                    match token {
                        Ok(token) => d.open_socket(&with_token(&url, &token), generation),
                        Err(detail) => {
                            d.input(|e, now| e.handle_token_failed(generation, &detail, now))
                        }
                    }
                });
            }
        }
    }

    fn open_socket(self: &Rc<Self>, url: &str, generation: u64) {
        match BrokerSocket::open(self.me.clone(), url, generation, &self.platform.websocket) {
            Ok(socket) => self.io.borrow_mut().socket = Some(socket),
            Err(detail) => self.later(move |e, now| {
                e.handle_broker_closed(generation, 1006, &detail, now);
            }),
        }
    }

    #[cfg(feature = "full")]
    fn attach_hub(self: &Rc<Self>) {
        let Some(hub) = self.hub.clone() else { return };
        let weak = self.me.clone();
        let deliver =
            Closure::<dyn FnMut(JsValue, JsValue)>::new(move |from: JsValue, data: JsValue| {
                if let (Some(from), Some(data)) = (from.as_string(), data.as_string()) {
                    Driver::feed(&weak, |e, now| e.handle_hub_signal(&from, &data, now));
                }
            });
        let deliver_js: JsValue = deliver.as_ref().clone();
        self.io.borrow_mut().hub_deliver = Some(deliver);
        let weak = self.me.clone();
        spawn_local(async move {
            let result = call_js(&hub, "attach", &[deliver_js]).await;
            let Some(d) = weak.upgrade() else { return };
            match result.map(|v| (v.as_string(), v)) {
                Ok((Some(address), _)) => {
                    let ice = Reflect::get(&hub, &"iceServers".into())
                        .ok()
                        .filter(|v| !v.is_undefined() && !v.is_null())
                        .and_then(|v| js_sys::JSON::stringify(&v).ok())
                        .and_then(|s| s.as_string())
                        .and_then(|s| {
                            crate::protocol::json::items(&s)
                                .ok()?
                                .into_iter()
                                .map(|i| crate::protocol::IceServer::decode(i).ok())
                                .collect::<Option<Vec<_>>>()
                        });
                    d.input(|e, _| e.handle_hub_attached(&address, ice));
                }
                Ok((None, other)) => {
                    let detail =
                        format!("it must resolve an address, got {}", js_error_text(&other));
                    d.input(|e, _| e.handle_hub_failed(&detail));
                }
                Err(err) => {
                    let detail = js_error_text(&err);
                    d.input(|e, _| e.handle_hub_failed(&detail));
                }
            }
        });
    }

    /// Hands a signal to the hub, in order; a throw or rejection fails the
    /// connection to `to`.
    #[cfg(feature = "full")]
    fn hub_send(self: &Rc<Self>, to: String, data: String) {
        let Some(hub) = self.hub.clone() else { return };
        let from = self.read(|e| e.id().unwrap_or_default().to_string());
        let out = Reflect::get(&hub, &"send".into())
            .and_then(|f| {
                f.dyn_into::<Function>()
                    .map_err(|_| JsValue::from_str("the hub has no send() method"))
            })
            .and_then(|f| f.call3(&hub, &from.into(), &to.as_str().into(), &data.into()));
        let weak = self.me.clone();
        match out {
            Err(err) => {
                let reason = js_error_text(&err);
                self.later(move |e, now| e.handle_hub_undeliverable(&to, &reason, now));
            }
            Ok(v) => {
                if let Ok(p) = v.dyn_into::<Promise>() {
                    spawn_local(async move {
                        if let Err(err) = JsFuture::from(p).await {
                            let reason = js_error_text(&err);
                            Driver::feed(&weak, |e, now| {
                                e.handle_hub_undeliverable(&to, &reason, now)
                            });
                        }
                    });
                }
            }
        }
    }

    /// Whether this driver talks through a JS hub (a Node not on the broker).
    pub fn hub(&self) -> Option<JsValue> {
        self.hub.clone()
    }

    /// After `close()`: the page listeners go at once; the timer
    /// once nothing is left to release.
    fn after_close(&self) {
        let (closed, drained) = self.read(|e| (e.is_closed(), e.is_drained()));
        if !closed {
            return;
        }
        let mut io = self.io.borrow_mut();
        io.listeners.clear();
        io.hub_deliver = None;
        if drained {
            io.timer = None;
        }
    }
}

/// Waits for a command's outcome.
#[cfg(feature = "full")] // rest and Node
async fn outcome(started: Result<Outcome, PeerError>) -> Result<Reply, PeerError> {
    started?
        .await
        .unwrap_or_else(|_| Err(PeerError::Closed("the peer".into())))
}

/// Calls `obj.name(...args)`, awaiting a returned Promise; a throw or a
/// rejection becomes `Err`.
pub async fn call_js(obj: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: Function = Reflect::get(obj, &name.into())?
        .dyn_into()
        .map_err(|_| JsValue::from_str(&format!("the hub has no {name}() method")))?;
    let out = f.apply(obj, &args.iter().collect::<js_sys::Array>())?;
    match out.dyn_into::<Promise>() {
        Ok(p) => JsFuture::from(p).await,
        Err(v) => Ok(v),
    }
}

/// Calls the `token` function; accepts a string or a Promise of one.
async fn ask_for_token(f: &Function) -> Result<String, String> {
    let mut value = f
        .call0(&JsValue::UNDEFINED)
        .map_err(|e| js_error_text(&e))?;
    if let Some(p) = value.dyn_ref::<Promise>() {
        value = JsFuture::from(p.clone())
            .await
            .map_err(|e| js_error_text(&e))?;
    }
    value
        .as_string()
        .ok_or_else(|| "it must return a string or a Promise of one".to_string())
}

/// `url` with `token` as its `token` query parameter.
fn with_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let token = String::from(js_sys::encode_uri_component(token));
    format!("{url}{sep}token={token}")
}
