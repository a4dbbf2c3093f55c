//! SCRAM credentials in the metadata store (`scram/<user>/<mechanism>`), so that every
//! broker of a cluster checks the same ones and a change reaches all of them at once (the
//! store is read on every SCRAM authentication).

use std::collections::BTreeMap;
use std::sync::Arc;

use stratus_auth::scram::{Credential, Mechanism};
use stratus_meta::repo::{self, ScramRecord};
use stratus_meta::{keys, MetaError, MetaStore, Op};

/// The credential store.
pub struct ScramStore {
    meta: Arc<dyn MetaStore>,
}

/// One change of AlterUserScramCredentials.
#[derive(Debug, Clone)]
pub enum Change {
    /// Sets the user's credential for a mechanism.
    Upsert(String, Credential),
    /// Deletes it.
    Delete(String, Mechanism),
}

impl ScramStore {
    /// A store over `meta`.
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        Self { meta }
    }

    /// A user's credential for a mechanism.
    pub async fn get(&self, user: &str, m: Mechanism) -> Result<Option<Credential>, MetaError> {
        let key = keys::scram_key(user, m.name());
        Ok(repo::load::<ScramRecord>(self.meta.as_ref(), &key)
            .await?
            .map(|(r, _)| Credential {
                mechanism: m,
                salt: r.salt,
                stored_key: r.stored_key,
                server_key: r.server_key,
                iterations: r.iterations,
            }))
    }

    /// Every user with a credential, and its mechanisms with their iterations.
    pub async fn users(&self) -> Result<BTreeMap<String, Vec<(Mechanism, u32)>>, MetaError> {
        let mut out: BTreeMap<String, Vec<(Mechanism, u32)>> = BTreeMap::new();
        for (k, v) in self.meta.range(keys::SCRAM).await? {
            let Some((user, mech)) = keys::parse_scram_key(&k) else {
                continue;
            };
            let Some(m) = Mechanism::from_name(&mech) else {
                continue;
            };
            let r: ScramRecord = repo::decode(&k, &v)?;
            out.entry(user).or_default().push((m, r.iterations));
        }
        Ok(out)
    }

    /// Applies changes, in transactions of at most the store's limit.
    pub async fn apply(&self, changes: &[Change]) -> Result<(), MetaError> {
        for chunk in changes.chunks(stratus_meta::MAX_TXN_OPS) {
            self.apply_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn apply_chunk(&self, changes: &[Change]) -> Result<(), MetaError> {
        let ops = changes
            .iter()
            .map(|c| match c {
                Change::Upsert(user, cred) => Op::Put(
                    keys::scram_key(user, cred.mechanism.name()),
                    repo::encode(&ScramRecord {
                        salt: cred.salt.clone(),
                        stored_key: cred.stored_key.clone(),
                        server_key: cred.server_key.clone(),
                        iterations: cred.iterations,
                    }),
                    None,
                ),
                Change::Delete(user, m) => Op::Delete(keys::scram_key(user, m.name())),
            })
            .collect();
        self.meta.txn(vec![], ops).await.map(|_| ())
    }
}
