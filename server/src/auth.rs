//! Access tokens: an HS256-signed JWT, minted by the app's own server with a
//! secret it shares with the broker (`--auth-secret`), and checked when the
//! WebSocket is upgraded.
//!
//! A token's claims bind what its holder may do:
//!
//! - `sub` (optional): the one id the connection may register;
//! - `rooms` (optional): the rooms it may join, exact or with `*`;
//! - `exp` (required): when the token stops being accepted (Unix seconds).
//!
//! Without a token a client may still register ids and join rooms that no
//! `--protect` / `--protect-room` pattern covers, unless `--require-token`
//! turns every tokenless upgrade away. A bad token (forged, expired,
//! malformed) is never ignored: the upgrade completes and the broker closes
//! at once with 4007 and a reason, because a browser cannot read the HTTP
//! status of a refused WebSocket upgrade.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::limits::wildcard_match;

/// The shortest secret accepted: HS256 wants at least its 32-byte output.
pub const MIN_SECRET_BYTES: usize = 32;

/// Seconds of clock skew allowed between the minting server and the broker.
pub const LEEWAY_SECS: u64 = 30;

/// What a valid token allows its connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The id the connection may register (any unprotected id if `None`).
    pub sub: Option<String>,
    /// Room patterns the connection may join (any unprotected room if `None`).
    pub rooms: Option<Vec<String>>,
    /// When the token stops being accepted (Unix seconds): also for joins
    /// later on the connection it opened.
    pub exp: Option<u64>,
}

impl Grant {
    /// Whether the token has expired at `now` (Unix seconds), leeway
    /// allowed.
    pub fn expired(&self, now: u64) -> bool {
        self.exp
            .is_some_and(|exp| exp.saturating_add(LEEWAY_SECS) < now)
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    rooms: Option<Vec<String>>,
    exp: Option<u64>,
}

/// Which ids and rooms need a token, and the key that checks tokens.
#[derive(Clone, Default)]
pub struct Policy {
    key: Option<DecodingKey>,
    /// Every upgrade must carry a valid token.
    pub require_token: bool,
    /// Id patterns only a token with that `sub` may register.
    pub protected_ids: Vec<String>,
    /// Room patterns only a token listing them may join.
    pub protected_rooms: Vec<String>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("secret", &self.key.as_ref().map(|_| "<set>"))
            .field("require_token", &self.require_token)
            .field("protected_ids", &self.protected_ids)
            .field("protected_rooms", &self.protected_rooms)
            .finish()
    }
}

impl Policy {
    pub fn new(
        secret: Option<&str>,
        require_token: bool,
        protected_ids: Vec<String>,
        protected_rooms: Vec<String>,
    ) -> Result<Self, String> {
        let key = match secret {
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(format!(
                    "--auth-secret must be at least {MIN_SECRET_BYTES} bytes (try `openssl rand -hex 32`)"
                ));
            }
            Some(s) => Some(DecodingKey::from_secret(s.as_bytes())),
            None => None,
        };
        let restricts = require_token || !protected_ids.is_empty() || !protected_rooms.is_empty();
        if key.is_none() && restricts {
            return Err(
                "--require-token, --protect and --protect-room need --auth-secret to check tokens"
                    .into(),
            );
        }
        Ok(Self {
            key,
            require_token,
            protected_ids,
            protected_rooms,
        })
    }

    /// Checks the token presented at upgrade. `Ok(None)`: no token, and
    /// none is required. `Err`: the reason for close code 4007.
    pub fn admit(&self, token: Option<&str>) -> Result<Option<Grant>, String> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return match self.require_token {
                true => Err("this broker requires a token (the `token` option)".into()),
                false => Ok(None),
            };
        };
        let Some(key) = &self.key else {
            return Err("this broker has no --auth-secret and cannot check tokens".into());
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => "token expired: mint a fresh one".to_string(),
            ErrorKind::ImmatureSignature => "token not valid yet (nbf)".to_string(),
            ErrorKind::InvalidSignature => "token signature does not match --auth-secret".into(),
            ErrorKind::InvalidAlgorithm => "token must be signed with HS256".into(),
            ErrorKind::MissingRequiredClaim(c) => format!("token lacks the {c:?} claim"),
            _ => format!("malformed token ({e})"),
        })?;
        Ok(Some(Grant {
            sub: data.claims.sub,
            rooms: data.claims.rooms,
            exp: data.claims.exp,
        }))
    }

    /// May a connection holding `grant` register `id`?
    pub fn may_register(&self, grant: Option<&Grant>, id: &str) -> Result<(), String> {
        match grant.and_then(|g| g.sub.as_deref()) {
            Some(sub) if sub == id => Ok(()),
            Some(sub) => Err(format!("the token is for id {sub:?}, not {id:?}")),
            None if self.protects_id(id) => Err(format!(
                "id {id:?} is protected: connect with a token whose `sub` is {id:?}"
            )),
            None => Ok(()),
        }
    }

    /// Whether an id without a token binding it is refused.
    pub fn protects_id(&self, id: &str) -> bool {
        self.protected_ids.iter().any(|p| wildcard_match(p, id))
    }

    /// May a connection holding `grant` join `room`?
    pub fn may_join(&self, grant: Option<&Grant>, room: &str) -> Result<(), String> {
        match grant.and_then(|g| g.rooms.as_ref()) {
            Some(rooms) if rooms.iter().any(|p| wildcard_match(p, room)) => Ok(()),
            Some(_) => Err(format!("the token does not list room {room:?}")),
            None if self.protected_rooms.iter().any(|p| wildcard_match(p, room)) => Err(format!(
                "room {room:?} is protected: connect with a token whose `rooms` lists it"
            )),
            None => Ok(()),
        }
    }
}

/// The token a WebSocket upgrade carries: `?token=` in the URL (browsers
/// cannot set headers on a WebSocket), or `Authorization: Bearer` (the
/// scheme in any case). An empty `?token=` counts as none. Two different
/// tokens, or a `Bearer` with nothing after it, are refused rather than
/// one of them silently ignored; another scheme (`Basic`, for a proxy) is
/// not a token.
pub fn token_from(
    query: Option<&str>,
    authorization: Option<&str>,
) -> Result<Option<String>, String> {
    let from_query = query
        .and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "token")
                .map(|(_, v)| percent_decode(v))
        })
        .filter(|t| !t.is_empty());
    let from_header = match authorization.map(str::trim) {
        Some(h)
            if h.len() >= 6
                && h.is_char_boundary(6)
                && h[..6].eq_ignore_ascii_case("bearer")
                && (h.len() == 6 || h[6..].starts_with([' ', '\t'])) =>
        {
            let token = h[6..].trim();
            if token.is_empty() {
                return Err(
                    "the Authorization header's Bearer scheme has no token after it".into(),
                );
            }
            Some(token.to_string())
        }
        _ => None,
    };
    match (from_query, from_header) {
        (Some(q), Some(h)) if q != h => Err(
            "two different tokens: one in ?token= and one in the Authorization header; send one"
                .into(),
        ),
        (q, h) => Ok(q.or(h)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn mint(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn policy() -> Policy {
        Policy::new(
            Some(SECRET),
            false,
            vec!["admin-*".into()],
            vec!["staff".into()],
        )
        .unwrap()
    }

    #[test]
    fn a_valid_token_grants_its_id_and_rooms() {
        let p = policy();
        let t = mint(
            json!({"sub": "admin-1", "rooms": ["team-*"], "exp": now() + 60}),
            SECRET,
            Algorithm::HS256,
        );
        let g = p.admit(Some(&t)).unwrap().unwrap();
        assert_eq!(g.sub.as_deref(), Some("admin-1"));
        assert!(p.may_register(Some(&g), "admin-1").is_ok());
        assert!(p.may_register(Some(&g), "admin-2").is_err());
        assert!(p.may_join(Some(&g), "team-red").is_ok());
        assert!(p.may_join(Some(&g), "lobby").is_err(), "rooms claim limits");
        assert!(p.may_join(Some(&g), "staff").is_err());
        assert!(!g.expired(now()), "valid now");
        assert!(
            g.expired(now() + 60 + LEEWAY_SECS + 1),
            "expired later, leeway past"
        );
    }

    #[test]
    fn without_a_token_only_unprotected_ids_and_rooms_are_open() {
        let p = policy();
        assert_eq!(p.admit(None), Ok(None));
        assert!(p.may_register(None, "alice").is_ok());
        assert!(p.may_register(None, "admin-1").is_err());
        assert!(p.may_join(None, "lobby").is_ok());
        assert!(p.may_join(None, "staff").is_err());
        let strict = Policy::new(Some(SECRET), true, vec![], vec![]).unwrap();
        assert!(strict.admit(None).is_err());
        assert!(strict.admit(Some("")).is_err());
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let p = policy();
        let cases = [
            (
                mint(
                    json!({"sub": "a", "exp": now() - 3600}),
                    SECRET,
                    Algorithm::HS256,
                ),
                "expired",
            ),
            (
                mint(
                    json!({"sub": "a", "exp": now() + 60}),
                    &SECRET.replace('0', "1"),
                    Algorithm::HS256,
                ),
                "signature",
            ),
            (
                mint(
                    json!({"sub": "a", "exp": now() + 60}),
                    SECRET,
                    Algorithm::HS512,
                ),
                "HS256",
            ),
            (mint(json!({"sub": "a"}), SECRET, Algorithm::HS256), "exp"),
            (
                mint(
                    json!({"sub": "a", "exp": now() + 60, "nbf": now() + 3600}),
                    SECRET,
                    Algorithm::HS256,
                ),
                "not valid yet",
            ),
            (
                mint(
                    json!({"sub": 5, "exp": now() + 60}),
                    SECRET,
                    Algorithm::HS256,
                ),
                "malformed",
            ),
            ("not.a.token".to_string(), "malformed"),
            ("garbage".to_string(), "malformed"),
        ];
        for (token, why) in cases {
            let err = p.admit(Some(&token)).unwrap_err();
            assert!(err.contains(why), "{token}: {err}");
            assert!(err.len() <= 123, "fits a close frame's reason: {err}");
        }
        let no_secret = Policy::default();
        let t = mint(json!({"exp": now() + 60}), SECRET, Algorithm::HS256);
        assert!(no_secret.admit(Some(&t)).is_err());
    }

    #[test]
    fn weak_or_missing_secrets_are_configuration_errors() {
        assert!(Policy::new(Some("short"), false, vec![], vec![]).is_err());
        assert!(Policy::new(None, true, vec![], vec![]).is_err());
        assert!(Policy::new(None, false, vec!["a".into()], vec![]).is_err());
        assert!(Policy::new(None, false, vec![], vec![]).is_ok());
    }

    #[test]
    fn the_token_comes_from_the_query_or_the_authorization_header() {
        let got = |q, h| token_from(q, h).map(|t| t.unwrap_or_default());
        assert_eq!(got(Some("a=1&token=x.y.z"), None).as_deref(), Ok("x.y.z"));
        assert_eq!(got(Some("token=a%2Eb"), None).as_deref(), Ok("a.b"));
        assert_eq!(got(Some("token=%zz%"), None).as_deref(), Ok("%zz%"));
        assert_eq!(got(None, Some("Bearer abc")).as_deref(), Ok("abc"));
        assert_eq!(token_from(Some("other=1"), Some("Basic abc")), Ok(None));
        // The scheme in any case; an empty ?token= does not hide the header.
        assert_eq!(got(None, Some("bearer abc")).as_deref(), Ok("abc"));
        assert_eq!(
            got(Some("token="), Some("Bearer abc")).as_deref(),
            Ok("abc")
        );
        assert_eq!(
            got(Some("token=abc"), Some("Bearer abc")).as_deref(),
            Ok("abc")
        );
        // Never one of two tokens silently dropped.
        assert!(token_from(Some("token=abc"), Some("Bearer xyz")).is_err());
        assert!(token_from(None, Some("Bearer")).is_err());
        assert!(token_from(None, Some("Bearer   ")).is_err());
        assert_eq!(
            token_from(None, Some("Bearerabc")),
            Ok(None),
            "not the Bearer scheme"
        );
    }
}
