//! The Stratus admin API: the messages and the tonic client and server of
//! `proto/admin.proto`. Used by the broker (server), `stratus admin` (client) and the
//! operator; it owns no logic and may not depend on storage, metadata or the broker.

/// Generated messages and services of `stratus.admin.v1`.
#[allow(missing_docs, clippy::all, clippy::unwrap_used, clippy::expect_used)]
pub mod v1 {
    tonic::include_proto!("stratus.admin.v1");
}

pub use v1::*;
