//! The authentication gate of one connection, in front of the request handlers. On a SASL
//! listener nothing but ApiVersions, SaslHandshake and SaslAuthenticate passes until the
//! client is authenticated (anything else closes the connection, as Kafka does); frames
//! are limited to `sasl.server.max.receive.size` until then; a session past
//! `connections.max.reauth.ms` is closed at its next request unless the client
//! re-authenticated. On other listeners SaslHandshake and SaslAuthenticate are answered
//! ILLEGAL_SASL_STATE.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;

use crate::auth::sasl::{SaslExchange, Step};
use crate::auth::scram_store::ScramStore;
use crate::auth::{ListenerSecurity, Principal};
use crate::handlers;

/// What to do with a frame.
#[derive(Debug)]
pub enum Verdict {
    /// Not the gate's: the handlers answer it.
    Pass,
    /// Send this frame (already encoded) and go on.
    Answer(Bytes),
    /// Send this frame, if any, and close the connection for the reason given.
    Close(Option<Bytes>, String),
    /// A failed login: like `Close`, after `connection.failed.authentication.delay.ms`.
    Refuse(Option<Bytes>, String),
}

/// One connection's gate.
pub struct Gate {
    exchange: Option<SaslExchange>,
    /// Whether the client may send any request.
    authenticated: bool,
    /// When the session ends (`connections.max.reauth.ms`).
    expires: Option<Instant>,
    max_before_auth: usize,
}

impl Gate {
    /// The gate of a new connection on `listener`; SCRAM logins check `scram`.
    pub fn new(listener: &ListenerSecurity, scram: &Arc<ScramStore>) -> Self {
        let exchange = listener
            .sasl
            .clone()
            .map(|c| SaslExchange::new(c, scram.clone()));
        Gate {
            authenticated: exchange.is_none(),
            exchange,
            expires: None,
            max_before_auth: listener.max_receive_before_auth,
        }
    }

    /// Whether the client has authenticated (or needs not).
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The largest frame the connection may send now.
    pub fn max_frame(&self, max: usize) -> usize {
        if self.authenticated {
            max
        } else {
            max.min(self.max_before_auth)
        }
    }

    /// Looks at a frame before the handlers do; may set the session's principal.
    pub async fn check(&mut self, frame: &Bytes, principal: &mut Principal) -> Verdict {
        let Some(ex) = self.exchange.as_mut() else {
            return match api_key(frame) {
                Some(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) => {
                    illegal_state(frame, "this listener does not use SASL", false)
                }
                _ => Verdict::Pass,
            };
        };
        if ex.expects_raw_token() {
            // After a v0 handshake the tokens are bare frames.
            return match ex.step(frame).await {
                Ok(Step::Challenge(t)) => Verdict::Answer(Bytes::from(t)),
                Ok(Step::Done {
                    token,
                    user,
                    expires_ms,
                }) => {
                    self.succeeded(principal, user, expires_ms);
                    Verdict::Answer(Bytes::from(token))
                }
                Err(e) => Verdict::Refuse(None, failure(ex, &e)),
            };
        }
        // A SASL exchange under way (its handshake done): only its SaslAuthenticate may
        // come, during a re-authentication as well (Kafka's ILLEGAL_SASL_STATE otherwise).
        let exchanging = !ex.awaits_handshake();
        match api_key(frame) {
            Some(ApiKey::SaslHandshake) => self.handshake(frame),
            Some(ApiKey::SaslAuthenticate) if !exchanging => {
                illegal_state(frame, "SaslAuthenticate before SaslHandshake", true)
            }
            Some(ApiKey::SaslAuthenticate) => self.authenticate(frame, principal).await,
            api if exchanging => Verdict::Close(
                None,
                format!(
                    "{} during a SASL exchange",
                    api.map(|a| format!("{a:?}"))
                        .unwrap_or_else(|| "an unknown request".into())
                ),
            ),
            Some(ApiKey::ApiVersions) => Verdict::Pass,
            api if !self.authenticated => Verdict::Close(
                None,
                format!(
                    "{} before authentication",
                    api.map(|a| format!("{a:?}"))
                        .unwrap_or_else(|| "an unknown request".into())
                ),
            ),
            _ if self.expires.is_some_and(|e| Instant::now() >= e) => Verdict::Close(
                None,
                "the session expired (connections.max.reauth.ms) without re-authentication".into(),
            ),
            _ => Verdict::Pass,
        }
    }

    fn handshake(&mut self, frame: &Bytes) -> Verdict {
        let Some(ex) = self.exchange.as_mut() else {
            return Verdict::Pass;
        };
        let Ok((header, RequestKind::SaslHandshake(req))) = handlers::decode_request(frame.clone())
        else {
            return Verdict::Close(None, "undecodable SaslHandshake".into());
        };
        let v = header.request_api_version;
        let mechanisms: Vec<StrBytes> = ex
            .mechanisms()
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        let mut resp = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
        let result = ex.handshake(req.mechanism.as_str(), v == 0);
        let close = match &result {
            Ok(()) => None,
            Err(stratus_auth::AuthError::Invalid(msg)) if msg.starts_with("Unsupported") => {
                resp.error_code = Code::UnsupportedSaslMechanism.code();
                Some(msg.clone())
            }
            Err(e) => {
                resp.error_code = Code::IllegalSaslState.code();
                Some(e.to_string())
            }
        };
        let out = handlers::encode(
            ApiKey::SaslHandshake,
            v,
            header.correlation_id,
            &ResponseKind::SaslHandshake(resp),
        );
        match (close, out) {
            (None, Some(out)) => Verdict::Answer(out),
            (Some(why), out) => Verdict::Close(out, why),
            (None, None) => Verdict::Close(None, "SaslHandshake response not encodable".into()),
        }
    }

    async fn authenticate(&mut self, frame: &Bytes, principal: &mut Principal) -> Verdict {
        let Some(ex) = self.exchange.as_mut() else {
            return Verdict::Pass;
        };
        let Ok((header, RequestKind::SaslAuthenticate(req))) =
            handlers::decode_request(frame.clone())
        else {
            return Verdict::Close(None, "undecodable SaslAuthenticate".into());
        };
        let v = header.request_api_version;
        let reauth_ms = ex.reauth_ms();
        let mut resp = SaslAuthenticateResponse::default();
        let mut refuse = None;
        match ex.step(&req.auth_bytes).await {
            Ok(Step::Challenge(t)) => resp.auth_bytes = Bytes::from(t),
            Ok(Step::Done {
                token,
                user,
                expires_ms,
            }) => {
                resp.auth_bytes = Bytes::from(token);
                if let Some(lifetime) = session_lifetime_ms(reauth_ms, expires_ms) {
                    if v >= 1 {
                        resp.session_lifetime_ms = lifetime;
                    }
                }
                self.succeeded(principal, user, expires_ms);
            }
            Err(e) => {
                resp.error_code = Code::SaslAuthenticationFailed.code();
                resp.error_message = Some(StrBytes::from_string(e.to_string()));
                refuse = Some(failure(ex, &e));
            }
        }
        let out = handlers::encode(
            ApiKey::SaslAuthenticate,
            v,
            header.correlation_id,
            &ResponseKind::SaslAuthenticate(resp),
        );
        match (refuse, out) {
            (None, Some(out)) => Verdict::Answer(out),
            (Some(why), out) => Verdict::Refuse(out, why),
            (None, None) => Verdict::Close(None, "SaslAuthenticate response not encodable".into()),
        }
    }

    fn succeeded(&mut self, principal: &mut Principal, user: String, expires_ms: Option<i64>) {
        *principal = Principal::User(Arc::from(user.as_str()));
        self.authenticated = true;
        let reauth_ms = self.exchange.as_ref().map_or(0, SaslExchange::reauth_ms);
        self.expires = session_lifetime_ms(reauth_ms, expires_ms)
            .map(|ms| Instant::now() + Duration::from_millis(ms as u64));
    }
}

/// How long a new session lasts (KIP-368): `connections.max.reauth.ms`, and no longer than
/// the credential (an OAUTHBEARER token) when that expires first. With re-authentication
/// off, sessions do not end, whatever the credential, as in Kafka.
fn session_lifetime_ms(reauth_ms: i64, expires_ms: Option<i64>) -> Option<i64> {
    if reauth_ms <= 0 {
        return None;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let credential = expires_ms.map_or(i64::MAX, |e| (e - now_ms).max(1));
    Some(reauth_ms.min(credential))
}

/// The log line's reason for a failed authentication: who the client said it was, and why.
fn failure(ex: &SaslExchange, e: &stratus_auth::AuthError) -> String {
    match ex.attempted_user() {
        Some(u) => {
            // What the client sent, escaped and bounded: it may be anything.
            let shown: String = u.chars().take(64).collect();
            format!("authentication of User:{shown:?} failed: {e}")
        }
        None => format!("authentication failed: {e}"),
    }
}

/// The API key of a request frame.
fn api_key(frame: &Bytes) -> Option<ApiKey> {
    let key = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    ApiKey::try_from(key).ok()
}

/// ILLEGAL_SASL_STATE for a SASL request on a listener without SASL.
/// ILLEGAL_SASL_STATE for a SASL request that has no place here; `close`: then the
/// connection is closed.
fn illegal_state(frame: &Bytes, why: &str, close: bool) -> Verdict {
    let Ok((header, req)) = handlers::decode_request(frame.clone()) else {
        return Verdict::Close(None, format!("undecodable SASL request ({why})"));
    };
    let v = header.request_api_version;
    let (api, resp) = match req {
        RequestKind::SaslHandshake(_) => (
            ApiKey::SaslHandshake,
            ResponseKind::SaslHandshake(
                SaslHandshakeResponse::default().with_error_code(Code::IllegalSaslState.code()),
            ),
        ),
        _ => (
            ApiKey::SaslAuthenticate,
            ResponseKind::SaslAuthenticate(
                SaslAuthenticateResponse::default()
                    .with_error_code(Code::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_string(why.to_string()))),
            ),
        ),
    };
    match handlers::encode(api, v, header.correlation_id, &resp) {
        Some(out) if close => Verdict::Close(Some(out), why.to_string()),
        Some(out) => Verdict::Answer(out),
        None => Verdict::Close(None, format!("SASL response not encodable ({why})")),
    }
}

#[cfg(test)]
mod tests {
    use super::session_lifetime_ms;

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    #[test]
    fn a_session_ends_with_its_token_when_that_comes_first() {
        // Re-authentication off: no end, whatever the token.
        assert_eq!(session_lifetime_ms(0, Some(now_ms() + 1000)), None);
        assert_eq!(session_lifetime_ms(60_000, None), Some(60_000));
        let ends = session_lifetime_ms(60_000, Some(now_ms() + 5_000)).unwrap();
        assert!((4_000..=5_000).contains(&ends), "{ends}");
        assert_eq!(
            session_lifetime_ms(60_000, Some(now_ms() + 600_000)),
            Some(60_000)
        );
        // A token past its exp (within the clock skew): the session is over at once, but a
        // zero would mean "no limit" to the client.
        assert_eq!(
            session_lifetime_ms(60_000, Some(now_ms() - 10_000)),
            Some(1)
        );
    }
}
