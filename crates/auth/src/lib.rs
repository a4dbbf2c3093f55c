//! Stratus authentication, with no broker in sight: the TLS server configuration of a
//! listener ([`tls`], rustls), the SASL exchanges ([`plain`], [`scram`], [`oauth`]), JAAS lines
//! ([`jaas`]), principals from certificates ([`principal`]) and ACL decisions ([`acl`]). The broker keeps the
//! connection state, the credential store and the authorization checks; this crate never
//! sees a socket, a store or a Kafka request.

pub mod acl;
pub mod jaas;
pub mod oauth;
pub mod plain;
pub mod principal;
pub mod scram;
pub mod tls;

/// Why an authentication did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client's message is malformed (or asks for what is not supported).
    #[error("{0}")]
    Invalid(String),
    /// Wrong credentials, an unknown user or a refused identity.
    #[error("{0}")]
    Failed(String),
    /// The server could not do its part (no randomness).
    #[error("{0}")]
    Internal(String),
}
