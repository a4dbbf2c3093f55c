//! The SASL exchange of one connection: SaslHandshake picks a mechanism the listener
//! enables, then tokens go back and forth (in SaslAuthenticate requests, or as raw frames
//! after a v0 handshake) until the client is authenticated or refused. A client may
//! authenticate again on the same connection (KIP-368) with the same mechanism and
//! principal.

use std::sync::Arc;

use stratus_auth::plain::PlainUsers;
use stratus_auth::scram::{self, Mechanism, ServerExchange};
use stratus_auth::AuthError;

use super::scram_store::ScramStore;

/// PLAIN.
pub const PLAIN: &str = "PLAIN";

/// What a SASL listener accepts.
pub struct SaslConfig {
    /// `sasl.enabled.mechanisms` (those this broker implements).
    pub mechanisms: Vec<String>,
    /// PLAIN users (from the JAAS line or the credentials file).
    pub plain: PlainUsers,
    /// OAUTHBEARER's token validator, if the mechanism is enabled.
    pub oauth: Option<Arc<super::oauth::OAuth>>,
    /// `connections.max.reauth.ms` (0: sessions do not expire).
    pub reauth_ms: i64,
}

/// The exchange's state.
pub struct SaslExchange {
    config: Arc<SaslConfig>,
    scram: Arc<ScramStore>,
    state: State,
    /// The mechanism and user of the last successful authentication (re-authentication
    /// must keep both).
    authenticated: Option<(String, String)>,
    /// The user the client last said it is (for the log of a failure).
    attempted: Option<String>,
}

enum State {
    /// Waiting for SaslHandshake.
    Handshake,
    /// A mechanism is chosen; waiting for the client's first token.
    First { mechanism: String, raw: bool },
    /// SCRAM: the server-first message was sent; waiting for the client-final one.
    ScramFinal {
        exchange: Box<ServerExchange>,
        mechanism: String,
        raw: bool,
    },
}

/// The answer to a token.
#[derive(Debug)]
pub enum Step {
    /// Send this challenge; more tokens follow.
    Challenge(Vec<u8>),
    /// The client is authenticated as this user; send the final token.
    Done {
        /// The last server token (empty for PLAIN).
        token: Vec<u8>,
        /// The authenticated user.
        user: String,
        /// When the credential expires (an OAUTHBEARER token's exp, ms since the epoch).
        expires_ms: Option<i64>,
    },
}

impl SaslExchange {
    /// An exchange that waits for SaslHandshake; SCRAM credentials come from `scram`.
    pub fn new(config: Arc<SaslConfig>, scram: Arc<ScramStore>) -> Self {
        Self {
            config,
            scram,
            state: State::Handshake,
            authenticated: None,
            attempted: None,
        }
    }

    /// The user the client last tried to authenticate as, if it said.
    pub fn attempted_user(&self) -> Option<&str> {
        self.attempted.as_deref()
    }

    /// The enabled mechanisms.
    pub fn mechanisms(&self) -> &[String] {
        &self.config.mechanisms
    }

    /// `connections.max.reauth.ms`.
    pub fn reauth_ms(&self) -> i64 {
        self.config.reauth_ms
    }

    /// Whether the next frame is a raw token (after a v0 handshake) rather than a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self.state,
            State::First { raw: true, .. } | State::ScramFinal { raw: true, .. }
        )
    }

    /// Whether a handshake is due (no exchange is under way).
    pub fn awaits_handshake(&self) -> bool {
        matches!(self.state, State::Handshake)
    }

    /// SaslHandshake: chooses `mechanism`, or says it is not enabled. `raw` after a v0
    /// handshake: tokens then come as raw frames.
    pub fn handshake(&mut self, mechanism: &str, raw: bool) -> Result<(), AuthError> {
        if !matches!(self.state, State::Handshake) {
            return Err(AuthError::Invalid(
                "SaslHandshake while an authentication is under way".into(),
            ));
        }
        if !self.config.mechanisms.iter().any(|m| m == mechanism) {
            return Err(AuthError::Invalid(format!(
                "Unsupported SASL mechanism {mechanism}"
            )));
        }
        if let Some((previous, _)) = &self.authenticated {
            if previous != mechanism {
                return Err(AuthError::Failed(format!(
                    "Cannot change mechanisms during re-authentication from {previous} to {mechanism}"
                )));
            }
        }
        self.state = State::First {
            mechanism: mechanism.to_string(),
            raw,
        };
        Ok(())
    }

    /// One client token. An error ends the exchange (the caller answers and closes).
    pub async fn step(&mut self, token: &[u8]) -> Result<Step, AuthError> {
        match std::mem::replace(&mut self.state, State::Handshake) {
            State::Handshake => Err(AuthError::Invalid(
                "SaslAuthenticate before SaslHandshake".into(),
            )),
            State::First { mechanism, raw } => {
                if mechanism == PLAIN {
                    self.attempted = token
                        .split(|b| *b == 0)
                        .nth(1)
                        .map(|u| String::from_utf8_lossy(u).into_owned());
                    let user = self.config.plain.authenticate(token)?;
                    return self.done(&mechanism, user, Vec::new(), None);
                }
                if mechanism == stratus_auth::oauth::OAUTHBEARER {
                    let oauth = self.config.oauth.clone().ok_or_else(|| {
                        AuthError::Invalid("OAUTHBEARER is not configured".into())
                    })?;
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let v = oauth.authenticate(token, now_ms).await?;
                    self.attempted = Some(v.principal.clone());
                    return self.done(&mechanism, v.principal, Vec::new(), Some(v.expires_ms));
                }
                let Some(m) = Mechanism::from_name(&mechanism) else {
                    return Err(AuthError::Invalid(format!(
                        "Unsupported SASL mechanism {mechanism}"
                    )));
                };
                let first = scram::parse_client_first(token)?;
                self.attempted = Some(first.username.clone());
                let credential = self
                    .scram
                    .get(&first.username, m)
                    .await
                    .map_err(|e| AuthError::Internal(format!("credentials unavailable: {e}")))?
                    .ok_or_else(|| scram::invalid_credentials(m))?;
                let (exchange, challenge) = ServerExchange::first(first, credential)?;
                self.state = State::ScramFinal {
                    exchange: Box::new(exchange),
                    mechanism,
                    raw,
                };
                Ok(Step::Challenge(challenge))
            }
            State::ScramFinal {
                exchange,
                mechanism,
                ..
            } => {
                let user = exchange.username().to_string();
                let token = exchange.finish(token)?;
                self.done(&mechanism, user, token, None)
            }
        }
    }

    fn done(
        &mut self,
        mechanism: &str,
        user: String,
        token: Vec<u8>,
        expires_ms: Option<i64>,
    ) -> Result<Step, AuthError> {
        if let Some((_, previous)) = &self.authenticated {
            if *previous != user {
                return Err(AuthError::Failed(format!(
                    "Cannot change principals during re-authentication from User:{previous} to User:{user}"
                )));
            }
        }
        self.authenticated = Some((mechanism.to_string(), user.clone()));
        Ok(Step::Done {
            token,
            user,
            expires_ms,
        })
    }
}
