// conn.stats(): a summary of RTCPeerConnection.getStats() (wasm-bindgen
// imports this; plain JavaScript is smaller than walking the report in Rust).

export async function connectionStats(pc) {
  const report = await pc.getStats();
  const all = new Map();
  report.forEach((s) => all.set(s.id, s));
  let pair;
  for (const s of all.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = all.get(s.selectedCandidatePairId);
  }
  if (!pair) {
    for (const s of all.values()) {
      if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) { pair = s; break; }
    }
  }
  const local = pair && all.get(pair.localCandidateId);
  const remote = pair && all.get(pair.remoteCandidateId);
  const kinds = [local && local.candidateType, remote && remote.candidateType];
  const route = !pair ? null
    : kinds.includes('relay') ? 'relay'
    : kinds.includes('srflx') ? 'srflx'
    : kinds.includes('prflx') ? 'prflx'
    : 'host';
  const rtt = pair && pair.currentRoundTripTime;
  return {
    route,
    localCandidateType: (local && local.candidateType) || null,
    remoteCandidateType: (remote && remote.candidateType) || null,
    protocol: (local && local.protocol) || null,
    relayProtocol: (local && local.candidateType === 'relay' && local.relayProtocol) || null,
    rtt: typeof rtt === 'number' ? rtt * 1000 : null,
    bytesSent: (pair && pair.bytesSent) || 0,
    bytesReceived: (pair && pair.bytesReceived) || 0,
    report,
  };
}
