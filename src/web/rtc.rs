//! One RTCPeerConnection and the handlers it owns. Every handler feeds the
//! driver; dropping the link unsets them all and closes the connection.
//!
//! The connection's own channel is *negotiated* (both sides create it with
//! id 0), so it exists on both sides whichever side's offer wins a glare.

use std::rc::Weak;

use js_sys::{Function, JSON, Promise, Reflect};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcSdpType, RtcSessionDescriptionInit,
};

use super::driver::Driver;
use super::js_error_text;
use crate::core::engine::{ChannelPolicy, ConnId};
use crate::protocol::IceServer;

/// An RTCPeerConnection with its handlers.
pub struct PcLink {
    pub pc: RtcPeerConnection,
    _on_negotiation: Closure<dyn FnMut()>,
    _on_candidate: Closure<dyn FnMut(RtcPeerConnectionIceEvent)>,
    _on_state: Closure<dyn FnMut()>,
    _on_datachannel: Closure<dyn FnMut(RtcDataChannelEvent)>,
    #[cfg(feature = "media")]
    _on_track: Closure<dyn FnMut(JsValue)>,
}

fn ice_servers_js(servers: &[IceServer]) -> Result<JsValue, String> {
    let mut json = String::from("[");
    for (i, s) in servers.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&s.encode());
    }
    json.push(']');
    JSON::parse(&json).map_err(|e| js_error_text(&e))
}

/// `RTCDataChannelInit` for `policy`.
pub fn channel_init(policy: ChannelPolicy) -> RtcDataChannelInit {
    let init = RtcDataChannelInit::new();
    init.set_ordered(policy.ordered);
    if let Some(n) = policy.max_retransmits {
        init.set_max_retransmits(n);
    }
    init
}

impl PcLink {
    /// Creates the connection and its negotiated channel (returned apart:
    /// the driver owns it like any other channel).
    pub fn new(
        driver: Weak<Driver>,
        conn: ConnId,
        ice_servers: &[IceServer],
        policy: ChannelPolicy,
        platform: &super::Platform,
    ) -> Result<(Self, RtcDataChannel), String> {
        let config = RtcConfiguration::new();
        config.set_ice_servers(&ice_servers_js(ice_servers)?);
        if let Some(extra) = &platform.rtc_config {
            js_sys::Object::assign(&config, extra.unchecked_ref());
        }
        let pc: RtcPeerConnection =
            super::construct(&platform.rtc, "RTCPeerConnection", "rtc", &[config.into()])?
                .unchecked_into();
        let init = channel_init(policy);
        init.set_negotiated(true);
        init.set_id(0);
        let dc = pc.create_data_channel_with_data_channel_dict("peerwire", &init);

        let d = driver.clone();
        let on_negotiation = Closure::<dyn FnMut()>::new(move || {
            Driver::feed(&d, |e, now| e.handle_negotiation_needed(conn, now));
        });
        let d = driver.clone();
        let on_candidate = Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(
            move |ev: RtcPeerConnectionIceEvent| {
                // A null candidate marks the end of gathering: nothing to send.
                let Some(c) = ev.candidate() else { return };
                let Some(json) = JSON::stringify(&c.to_json())
                    .ok()
                    .and_then(|j| j.as_string())
                else {
                    return;
                };
                Driver::feed(&d, |e, _| e.handle_local_candidate(conn, &json));
            },
        );
        let d = driver.clone();
        let pc2 = pc.clone();
        let on_state = Closure::<dyn FnMut()>::new(move || {
            let state = Reflect::get(&pc2, &"connectionState".into())
                .ok()
                .and_then(|s| s.as_string())
                .unwrap_or_default();
            Driver::feed(&d, |e, now| e.handle_connection_state(conn, &state, now));
        });
        #[cfg(feature = "media")]
        let d = driver.clone();
        #[cfg(feature = "media")]
        let on_track = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            if let Some(driver) = d.upgrade() {
                driver.remote_track(conn, &ev);
            }
        });
        let d = driver;
        let on_datachannel =
            Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |ev: RtcDataChannelEvent| {
                if let Some(driver) = d.upgrade() {
                    driver.incoming_channel(conn, ev.channel());
                }
            });
        pc.set_onnegotiationneeded(Some(on_negotiation.as_ref().unchecked_ref()));
        pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        pc.set_ondatachannel(Some(on_datachannel.as_ref().unchecked_ref()));
        #[cfg(feature = "media")]
        pc.set_ontrack(Some(on_track.as_ref().unchecked_ref()));
        Ok((
            Self {
                pc,
                _on_negotiation: on_negotiation,
                _on_candidate: on_candidate,
                _on_state: on_state,
                _on_datachannel: on_datachannel,
                #[cfg(feature = "media")]
                _on_track: on_track,
            },
            dc,
        ))
    }
}

impl Drop for PcLink {
    fn drop(&mut self) {
        self.pc.set_onnegotiationneeded(None);
        self.pc.set_onicecandidate(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ondatachannel(None);
        #[cfg(feature = "media")]
        self.pc.set_ontrack(None);
        self.pc.close();
    }
}

/// `restartIce()`: the next offer gathers new candidates with new ICE
/// credentials. A WebRTC implementation without it (some Node.js ones)
/// makes an ordinary offer instead.
pub fn restart_ice(pc: &RtcPeerConnection) {
    if let Ok(f) = Reflect::get(pc, &"restartIce".into()) {
        if let Some(f) = f.dyn_ref::<Function>() {
            let _ = f.call0(pc);
        }
    }
}

/// `setLocalDescription()` with no argument: the browser creates the offer
/// or answer that fits the state. Returns `(type, sdp)` to send.
pub async fn set_local(pc: RtcPeerConnection) -> Result<(String, String), String> {
    let f: Function = Reflect::get(&pc, &"setLocalDescription".into())
        .map_err(|e| js_error_text(&e))?
        .dyn_into()
        .map_err(|_| "setLocalDescription is missing".to_string())?;
    let p: Promise = f
        .call0(&pc)
        .map_err(|e| js_error_text(&e))?
        .dyn_into()
        .map_err(|_| "setLocalDescription did not return a promise".to_string())?;
    JsFuture::from(p).await.map_err(|e| js_error_text(&e))?;
    let desc = pc
        .local_description()
        .ok_or("no local description after setLocalDescription")?;
    let kind = Reflect::get(&desc, &"type".into())
        .ok()
        .and_then(|t| t.as_string())
        .unwrap_or_default();
    Ok((kind, desc.sdp()))
}

pub async fn set_remote(pc: RtcPeerConnection, kind: String, sdp: String) -> Result<(), String> {
    let sdp_type = match kind.as_str() {
        "offer" => RtcSdpType::Offer,
        "answer" => RtcSdpType::Answer,
        "pranswer" => RtcSdpType::Pranswer,
        "rollback" => RtcSdpType::Rollback,
        other => return Err(format!("unknown description type \"{other}\"")),
    };
    let init = RtcSessionDescriptionInit::new(sdp_type);
    init.set_sdp(&sdp);
    JsFuture::from(pc.set_remote_description(&init))
        .await
        .map(|_| ())
        .map_err(|e| js_error_text(&e))
}

/// Adds a remote candidate given as `RTCIceCandidateInit` JSON.
pub async fn add_candidate(pc: RtcPeerConnection, json: String) -> Result<(), String> {
    let init = JSON::parse(&json).map_err(|e| js_error_text(&e))?;
    let p = pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(init.unchecked_ref()));
    JsFuture::from(p)
        .await
        .map(|_| ())
        .map_err(|e| js_error_text(&e))
}
