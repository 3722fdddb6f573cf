//! One RTCPeerConnection with its one data channel.
//!
//! The channel is *negotiated* (both sides create it with id 0), so it exists
//! on both sides whichever side's offer wins a glare, and no `datachannel`
//! event is needed. Each side's `ordered` / `maxRetransmits` govern what that
//! side sends.

use futures_channel::mpsc::UnboundedSender;
use js_sys::{Function, JSON, Promise, Reflect};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelState,
    RtcDataChannelType, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType,
    RtcSessionDescriptionInit,
};

use super::js_error_text;
use crate::core::negotiation::SignalingState;
use crate::protocol::IceServer;

/// What the connection and its channel report.
#[derive(Debug)]
pub enum RtcEvent {
    NegotiationNeeded,
    /// A local ICE candidate as JSON (`RTCIceCandidate.toJSON()`).
    LocalCandidate(String),
    SignalingChanged,
    ConnectionState(String),
    ChannelOpen,
    ChannelMessage(JsValue),
    ChannelClosed,
    ChannelError(String),
    /// The remote opened another channel (a stream or a socket).
    IncomingChannel(RtcDataChannel),
}

/// Sending policy of this side's channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelPolicy {
    pub ordered: bool,
    pub max_retransmits: Option<u16>,
}

impl ChannelPolicy {
    /// Reliable and ordered.
    pub const RELIABLE: Self = Self {
        ordered: true,
        max_retransmits: None,
    };

    pub fn reliable(&self) -> bool {
        self.ordered && self.max_retransmits.is_none()
    }
}

/// The browser objects and every handler installed on them.
pub struct RtcLink {
    pc: RtcPeerConnection,
    dc: RtcDataChannel,
    _on_negotiation: Closure<dyn FnMut()>,
    _on_candidate: Closure<dyn FnMut(RtcPeerConnectionIceEvent)>,
    _on_signaling: Closure<dyn FnMut()>,
    _on_state: Closure<dyn FnMut()>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut()>,
    _on_error: Closure<dyn FnMut(Event)>,
    _on_low: Closure<dyn FnMut()>,
    _on_datachannel: Closure<dyn FnMut(web_sys::RtcDataChannelEvent)>,
}

fn ice_servers_js(servers: &[IceServer]) -> Result<JsValue, String> {
    let json = serde_json::to_string(servers).map_err(|e| e.to_string())?;
    JSON::parse(&json).map_err(|e| js_error_text(&e))
}

impl RtcLink {
    /// Creates the connection and its channel. Events go to `tx`; each
    /// `bufferedamountlow` to `low`.
    pub fn new(
        ice_servers: &[IceServer],
        policy: ChannelPolicy,
        low_water: u32,
        tx: UnboundedSender<RtcEvent>,
        low: UnboundedSender<()>,
    ) -> Result<Self, String> {
        let config = RtcConfiguration::new();
        config.set_ice_servers(&ice_servers_js(ice_servers)?);
        let pc =
            RtcPeerConnection::new_with_configuration(&config).map_err(|e| js_error_text(&e))?;
        let init = RtcDataChannelInit::new();
        init.set_negotiated(true);
        init.set_id(0);
        init.set_ordered(policy.ordered);
        if let Some(n) = policy.max_retransmits {
            init.set_max_retransmits(n);
        }
        let dc = pc.create_data_channel_with_data_channel_dict("peerwire", &init);
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        dc.set_buffered_amount_low_threshold(low_water);

        let send = |tx: &UnboundedSender<RtcEvent>, make: fn() -> RtcEvent| {
            let tx = tx.clone();
            Closure::<dyn FnMut()>::new(move || {
                let _ = tx.unbounded_send(make());
            })
        };
        let on_negotiation = send(&tx, || RtcEvent::NegotiationNeeded);
        let on_signaling = send(&tx, || RtcEvent::SignalingChanged);
        let on_open = send(&tx, || RtcEvent::ChannelOpen);
        let on_close = send(&tx, || RtcEvent::ChannelClosed);
        let t = tx.clone();
        let on_candidate = Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(
            move |e: RtcPeerConnectionIceEvent| {
                // A null candidate marks the end of gathering: nothing to send.
                if let Some(c) = e.candidate() {
                    if let Ok(json) = JSON::stringify(&c.to_json()) {
                        let _ = t.unbounded_send(RtcEvent::LocalCandidate(json.into()));
                    }
                }
            },
        );
        let t = tx.clone();
        let pc2 = pc.clone();
        let on_state = Closure::<dyn FnMut()>::new(move || {
            let state = Reflect::get(&pc2, &"connectionState".into())
                .ok()
                .and_then(|s| s.as_string())
                .unwrap_or_default();
            let _ = t.unbounded_send(RtcEvent::ConnectionState(state));
        });
        let t = tx.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let _ = t.unbounded_send(RtcEvent::ChannelMessage(e.data()));
        });
        let t = tx.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
            let text = Reflect::get(&e, &"error".into())
                .map(|err| js_error_text(&err))
                .unwrap_or_else(|_| "data channel error".into());
            let _ = t.unbounded_send(RtcEvent::ChannelError(text));
        });
        let on_low = Closure::<dyn FnMut()>::new(move || {
            let _ = low.unbounded_send(());
        });
        let on_datachannel = Closure::<dyn FnMut(web_sys::RtcDataChannelEvent)>::new(
            move |e: web_sys::RtcDataChannelEvent| {
                let _ = tx.unbounded_send(RtcEvent::IncomingChannel(e.channel()));
            },
        );

        pc.set_onnegotiationneeded(Some(on_negotiation.as_ref().unchecked_ref()));
        pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
        pc.set_onsignalingstatechange(Some(on_signaling.as_ref().unchecked_ref()));
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        pc.set_ondatachannel(Some(on_datachannel.as_ref().unchecked_ref()));
        dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        dc.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
        Ok(Self {
            pc,
            dc,
            _on_negotiation: on_negotiation,
            _on_candidate: on_candidate,
            _on_signaling: on_signaling,
            _on_state: on_state,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
            _on_low: on_low,
            _on_datachannel: on_datachannel,
        })
    }

    /// Whether a remote description has been applied (the connection is
    /// negotiated; peerwire adds no media, so it never needs more).
    pub fn has_remote_description(&self) -> bool {
        self.pc.remote_description().is_some()
    }

    pub fn signaling_state(&self) -> SignalingState {
        let s = Reflect::get(&self.pc, &"signalingState".into())
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default();
        SignalingState::parse(&s)
    }

    /// `setLocalDescription()` with no argument: the browser creates the
    /// offer or answer that fits the state. Returns `(type, sdp)` to send.
    pub async fn set_local(&self) -> Result<(String, String), String> {
        let f: Function = Reflect::get(&self.pc, &"setLocalDescription".into())
            .map_err(|e| js_error_text(&e))?
            .dyn_into()
            .map_err(|_| "setLocalDescription is missing".to_string())?;
        let p: Promise = f
            .call0(&self.pc)
            .map_err(|e| js_error_text(&e))?
            .dyn_into()
            .map_err(|_| "not a promise".to_string())?;
        JsFuture::from(p).await.map_err(|e| js_error_text(&e))?;
        let desc = self
            .pc
            .local_description()
            .ok_or("no local description after setLocalDescription")?;
        let kind = Reflect::get(&desc, &"type".into())
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default();
        Ok((kind, desc.sdp()))
    }

    pub async fn set_remote(&self, kind: &str, sdp: &str) -> Result<(), String> {
        let sdp_type = match kind {
            "offer" => RtcSdpType::Offer,
            "answer" => RtcSdpType::Answer,
            "pranswer" => RtcSdpType::Pranswer,
            "rollback" => RtcSdpType::Rollback,
            other => return Err(format!("unknown description type {other:?}")),
        };
        let init = RtcSessionDescriptionInit::new(sdp_type);
        init.set_sdp(sdp);
        JsFuture::from(self.pc.set_remote_description(&init))
            .await
            .map(|_| ())
            .map_err(|e| js_error_text(&e))
    }

    /// Adds a remote candidate given as `RTCIceCandidateInit` JSON.
    pub async fn add_candidate(&self, json: &str) -> Result<(), String> {
        let init = JSON::parse(json).map_err(|e| js_error_text(&e))?;
        let p = self
            .pc
            .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(init.unchecked_ref()));
        JsFuture::from(p)
            .await
            .map(|_| ())
            .map_err(|e| js_error_text(&e))
    }

    pub fn channel_open(&self) -> bool {
        self.dc.ready_state() == RtcDataChannelState::Open
    }

    /// Bytes queued in the channel and not yet sent.
    pub fn buffered(&self) -> usize {
        self.dc.buffered_amount() as usize
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> Result<(), String> {
        self.dc
            .send_with_u8_array(frame)
            .map_err(|e| js_error_text(&e))
    }

    /// Creates another (in-band negotiated) channel for a stream or socket.
    pub fn create_channel(&self, label: &str, policy: ChannelPolicy) -> RtcDataChannel {
        let init = RtcDataChannelInit::new();
        init.set_ordered(policy.ordered);
        if let Some(n) = policy.max_retransmits {
            init.set_max_retransmits(n);
        }
        self.pc
            .create_data_channel_with_data_channel_dict(label, &init)
    }

    /// Closes the channel (after what is buffered) but not the connection.
    pub fn close_channel(&self) {
        self.dc.close();
    }
}

impl Drop for RtcLink {
    fn drop(&mut self) {
        self.pc.set_onnegotiationneeded(None);
        self.pc.set_onicecandidate(None);
        self.pc.set_onsignalingstatechange(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ondatachannel(None);
        self.dc.set_onopen(None);
        self.dc.set_onmessage(None);
        self.dc.set_onclose(None);
        self.dc.set_onerror(None);
        self.dc.set_onbufferedamountlow(None);
        self.dc.close();
        self.pc.close();
    }
}

impl super::channel::FrameSink for RtcLink {
    fn buffered(&self) -> usize {
        RtcLink::buffered(self)
    }

    fn send_frame(&self, frame: &[u8]) -> Result<(), String> {
        self.send(frame)
    }
}
