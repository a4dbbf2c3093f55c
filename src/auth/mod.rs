//! Authentication of Kafka connections: what each listener asks of a client (its security
//! protocol from `listener.security.protocol.map`: TLS, SASL, both or neither), the TLS
//! configuration it serves (re-read when its files change), the SASL exchange of a
//! connection ([`sasl`]; the server's gate runs it) and the SCRAM credentials in the
//! metadata store ([`scram_store`]). The pure parts (TLS configs, SCRAM and PLAIN, JAAS lines, principal
//! mapping) are the `stratus-auth` crate.
//!
//! Sees the settings and the metadata store; never the broker, the log or the groups.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use stratus_auth::plain::PlainUsers;
use stratus_auth::principal::MappingRules;
use stratus_auth::scram::Mechanism;
use stratus_auth::tls::{Built, ClientAuth, KeySource, TlsSettings, TrustSource};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::{SecurityProtocol, Settings};

pub mod acls;
pub mod oauth;
pub mod sasl;
pub mod scram_store;

use sasl::{SaslConfig, PLAIN};
use scram_store::ScramStore;
use stratus_auth::oauth::OAUTHBEARER;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Not authenticated (a PLAINTEXT listener, or TLS without a client certificate):
    /// Kafka's `User:ANONYMOUS`.
    Anonymous,
    /// Authenticated (SASL, or a TLS client certificate) as this user.
    User(Arc<str>),
}

impl Principal {
    /// The name without its type: `alice`, `ANONYMOUS`.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "ANONYMOUS",
            Principal::User(u) => u,
        }
    }
}

impl std::fmt::Display for Principal {
    /// Kafka's form: `User:alice`, `User:ANONYMOUS`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => write!(f, "User:ANONYMOUS"),
            Principal::User(u) => write!(f, "User:{u}"),
        }
    }
}

/// What one listener asks of its clients.
pub struct ListenerSecurity {
    /// The listener's name.
    pub name: String,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
    /// Its TLS configuration (SSL and SASL_SSL).
    pub tls: Option<Tls>,
    /// Its SASL configuration (SASL_PLAINTEXT and SASL_SSL).
    pub sasl: Option<Arc<SaslConfig>>,
    /// `ssl.principal.mapping.rules`: the principal of a client certificate.
    pub principal_rules: MappingRules,
    /// Longest wait for the TLS handshake and the SASL exchange.
    pub auth_timeout: Duration,
    /// Largest frame before authentication (`sasl.server.max.receive.size`).
    pub max_receive_before_auth: usize,
    /// `connection.failed.authentication.delay.ms`.
    pub failed_login_delay_ms: u64,
}

/// A listener's TLS configuration, rebuilt when the files it came from change.
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<Built>>,
}

impl Tls {
    /// When the certificate in use expires (seconds since the Unix epoch).
    pub fn not_after(&self) -> Option<i64> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .not_after
    }

    /// The acceptor for a new connection (existing connections keep theirs).
    pub fn acceptor(&self) -> TlsAcceptor {
        let built = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        TlsAcceptor::from(built.config.clone())
    }

    /// Rebuilds the configuration if a file it came from changed. A rebuild that fails
    /// (a file half-written by a rotation) keeps the current configuration and is tried
    /// again on the next call.
    pub fn reload_if_changed(&self, listener: &str) {
        let changed = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .files_changed();
        if !changed {
            return;
        }
        match self.settings.build() {
            Ok(built) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(built);
                info!(
                    listener,
                    "TLS key, certificates or truststore changed; new connections use them"
                );
            }
            Err(e) => {
                warn!(listener, error = %e, "TLS files changed but cannot be used yet; keeping the previous ones")
            }
        }
    }
}

/// Every listener's security, in the order of `listeners`.
pub struct Security {
    /// One per listener.
    pub listeners: Vec<Arc<ListenerSecurity>>,
    /// SCRAM credentials.
    pub scram: Arc<ScramStore>,
    /// Bytes of frames read from clients that have not logged in yet, over all
    /// connections: kept apart from `queued.max.request.bytes`, so that connections that
    /// never log in cannot starve the clients that did.
    pub preauth_memory: Arc<tokio::sync::Semaphore>,
}

/// Bytes of frames from clients that have not logged in, over all connections.
pub const PREAUTH_MEMORY: usize = 64 << 20;

impl Security {
    /// Checks every listener's security settings (TLS files included) before anything
    /// starts; the error names the listener and the setting that is wrong.
    pub fn check(settings: &Settings) -> anyhow::Result<()> {
        Self::listeners(settings).map(|_| ())
    }

    /// Builds every listener's security from the settings; SCRAM logins check `scram`.
    pub fn from_settings(settings: &Settings, scram: Arc<ScramStore>) -> anyhow::Result<Self> {
        Ok(Security {
            listeners: Self::listeners(settings)?,
            scram,
            preauth_memory: Arc::new(tokio::sync::Semaphore::new(PREAUTH_MEMORY)),
        })
    }

    fn listeners(settings: &Settings) -> anyhow::Result<Vec<Arc<ListenerSecurity>>> {
        let mut listeners = Vec::new();
        for l in &settings.server.listeners {
            let protocol = settings.security_protocol(&l.name)?;
            let s = settings.security_for(&l.name)?;
            let what = |e: String| anyhow::anyhow!("listener {} ({protocol}): {e}", l.name);
            let tls = if protocol.tls() {
                let settings = tls_settings(&s).map_err(what)?;
                let built = settings.build().map_err(what)?;
                Some(Tls {
                    settings,
                    current: RwLock::new(Arc::new(built)),
                })
            } else {
                None
            };
            let sasl = if protocol.sasl() {
                Some(Arc::new(sasl_config(&s).map_err(what)?))
            } else {
                None
            };
            listeners.push(Arc::new(ListenerSecurity {
                name: l.name.clone(),
                protocol,
                tls,
                sasl,
                principal_rules: MappingRules::parse(&s.ssl_principal_mapping_rules)
                    .map_err(|e| what(format!("ssl.principal.mapping.rules: {e}")))?,
                auth_timeout: Duration::from_millis(s.authentication_timeout_ms),
                max_receive_before_auth: s.sasl_server_max_receive_size,
                failed_login_delay_ms: s.connection_failed_authentication_delay_ms,
            }));
        }
        Ok(listeners)
    }

    /// The OAUTHBEARER validators of the listeners that have one, with their names (an
    /// https JWKS is kept fresh by [`oauth::OAuth::run`]).
    pub fn oauth(&self) -> Vec<(String, Arc<oauth::OAuth>)> {
        self.listeners
            .iter()
            .filter_map(|l| {
                let o = l.sasl.as_ref()?.oauth.clone()?;
                Some((l.name.clone(), o))
            })
            .collect()
    }

    /// Re-reads TLS files that changed (the broker calls this every second).
    pub fn reload_tls(&self) {
        for l in &self.listeners {
            if let Some(tls) = &l.tls {
                tls.reload_if_changed(&l.name);
            }
        }
    }
}

fn tls_settings(s: &crate::config::SecurityConfig) -> Result<TlsSettings, String> {
    let jks = "JKS keystores are not supported: convert it to PKCS12 or PEM \
               (keytool -importkeystore -deststoretype PKCS12, then openssl pkcs12 -nodes)";
    let key = match s.ssl_keystore_type.as_str() {
        "JKS" => return Err(format!("ssl.keystore.type=JKS: {jks}")),
        "PKCS12" if s.ssl_keystore_location.is_empty() => {
            return Err("ssl.keystore.type=PKCS12 needs ssl.keystore.location".into())
        }
        "PKCS12" => KeySource::Pkcs12 {
            path: s.ssl_keystore_location.clone().into(),
            password: s.ssl_keystore_password.clone(),
        },
        _ if !s.ssl_keystore_key.is_empty() || !s.ssl_keystore_certificate_chain.is_empty() => {
            if s.ssl_keystore_key.is_empty() || s.ssl_keystore_certificate_chain.is_empty() {
                return Err(
                    "ssl.keystore.key and ssl.keystore.certificate.chain go together".into(),
                );
            }
            KeySource::PemInline {
                key: s.ssl_keystore_key.clone(),
                chain: s.ssl_keystore_certificate_chain.clone(),
            }
        }
        _ if !s.ssl_keystore_location.is_empty() => {
            KeySource::PemFile(s.ssl_keystore_location.clone().into())
        }
        _ => {
            return Err(
                "TLS needs a key and certificate: set ssl.keystore.location (a PEM file with \
                 both) or ssl.keystore.key and ssl.keystore.certificate.chain"
                    .into(),
            )
        }
    };
    let trust = match s.ssl_truststore_type.as_str() {
        "JKS" => return Err(format!("ssl.truststore.type=JKS: {jks}")),
        "PKCS12" if s.ssl_truststore_location.is_empty() => None,
        "PKCS12" => Some(TrustSource::Pkcs12 {
            path: s.ssl_truststore_location.clone().into(),
            password: s.ssl_truststore_password.clone(),
        }),
        _ if !s.ssl_truststore_certificates.is_empty() => Some(TrustSource::PemInline(
            s.ssl_truststore_certificates.clone(),
        )),
        _ if !s.ssl_truststore_location.is_empty() => Some(TrustSource::PemFile(
            s.ssl_truststore_location.clone().into(),
        )),
        _ => None,
    };
    let client_auth = match s.ssl_client_auth.as_str() {
        "required" => ClientAuth::Required,
        "requested" => ClientAuth::Requested,
        _ => ClientAuth::None,
    };
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    Ok(TlsSettings {
        key,
        trust,
        client_auth,
        protocols: list(&s.ssl_enabled_protocols),
        cipher_suites: list(&s.ssl_cipher_suites),
        key_password: (!s.ssl_key_password.is_empty()).then(|| s.ssl_key_password.clone()),
    })
}

fn sasl_config(s: &crate::config::SecurityConfig) -> Result<SaslConfig, String> {
    let mut mechanisms = Vec::new();
    for m in s
        .sasl_enabled_mechanisms
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        if m != PLAIN && m != OAUTHBEARER && Mechanism::from_name(m).is_none() {
            return Err(format!(
                "sasl.enabled.mechanisms: {m} is not supported; use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
            ));
        }
        mechanisms.push(m.to_string());
    }
    if mechanisms.is_empty() {
        return Err("sasl.enabled.mechanisms is empty".into());
    }
    let mut plain = Vec::new();
    if !s.sasl_jaas_config.is_empty() {
        let jaas = stratus_auth::jaas::Jaas::parse(&s.sasl_jaas_config)
            .map_err(|e| format!("sasl.jaas.config: {e}"))?;
        plain.extend(jaas.plain_users());
    }
    if !s.sasl_plain_credentials_file.is_empty() {
        let path = &s.sasl_plain_credentials_file;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("sasl.plain.credentials.file {path}: {e}"))?;
        let users = PlainUsers::parse_file(&text)
            .map_err(|e| format!("sasl.plain.credentials.file {path}: {e}"))?;
        plain.extend(users.into_pairs());
    }
    let plain = PlainUsers::new(plain);
    if mechanisms.iter().any(|m| m == PLAIN) && plain.is_empty() {
        warn!("SASL PLAIN is enabled but no user is configured (sasl.jaas.config user_<name>=\"...\" or sasl.plain.credentials.file): every PLAIN login fails");
    }
    let oauth = if mechanisms.iter().any(|m| m == OAUTHBEARER) {
        Some(Arc::new(oauth::OAuth::from_settings(s)?))
    } else {
        None
    };
    Ok(SaslConfig {
        mechanisms,
        plain,
        oauth,
        reauth_ms: s.connections_max_reauth_ms,
    })
}
