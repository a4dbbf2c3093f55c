//! Transactions (KIP-98): the transaction coordinator. Transactional ids are hashed onto the
//! coordinator shards ([`crate::coordinator`]) that groups use, owned and fenced the same
//! way; each id's record lives in the metadata store and changes only by the rules of
//! [`state`].
pub mod state;
