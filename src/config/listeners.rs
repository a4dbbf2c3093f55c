//! Listeners and their security: `listeners` / `advertised.listeners` (what is bound and
//! what clients are told), `listener.security.protocol.map`, and the security settings of
//! one listener (`listener.name.<listener>.<setting>` over `<setting>`).

use super::{def, invalid, ConfigError, SecurityConfig, Settings};

/// A listener: name and socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name (PLAINTEXT).
    pub name: String,
    /// Host to bind or advertise.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// A listener's security protocol (`listener.security.protocol.map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Neither TLS nor SASL.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        })
    }
}

impl SecurityProtocol {
    /// From its name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "PLAINTEXT" => Self::Plaintext,
            "SSL" => Self::Ssl,
            "SASL_PLAINTEXT" => Self::SaslPlaintext,
            "SASL_SSL" => Self::SaslSsl,
            _ => return None,
        })
    }

    /// Whether connections speak TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether clients authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// Settings that may be given for one listener (`listener.name.<listener>.<setting>`).
pub fn per_listener(name: &str) -> bool {
    name.starts_with("ssl.")
        || name.starts_with("sasl.")
        || name == "connections.max.reauth.ms"
        || name == "authentication.timeout.ms"
        || name == "connection.failed.authentication.delay.ms"
}

/// The mechanisms a `listener.name.<l>.<mechanism>.sasl.jaas.config` may name.
const JAAS_MECHANISMS: &[&str] = &["plain", "scram-sha-256", "scram-sha-512", "oauthbearer"];

/// Kafka's broker-side OAUTHBEARER validator: the one server callback handler Stratus takes
/// (it validates tokens against the JWKS itself).
const OAUTH_VALIDATOR: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler";

impl Settings {
    /// A listener's security protocol, from `listener.security.protocol.map` (a listener
    /// named after a protocol needs no entry).
    pub fn security_protocol(&self, listener: &str) -> Result<SecurityProtocol, ConfigError> {
        let map = &self.security.listener_security_protocol_map;
        for pair in map.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, protocol)) = pair.split_once(':') else {
                return Err(invalid(
                    "listener.security.protocol.map",
                    map,
                    "LISTENER:PROTOCOL pairs separated by commas",
                ));
            };
            let Some(protocol) = SecurityProtocol::parse(protocol.trim()) else {
                return Err(invalid(
                    "listener.security.protocol.map",
                    map,
                    format!(
                        "protocols PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (not '{}')",
                        protocol.trim()
                    ),
                ));
            };
            if name.trim() == listener {
                return Ok(protocol);
            }
        }
        SecurityProtocol::parse(listener).ok_or_else(|| {
            invalid(
                "listener.security.protocol.map",
                map,
                format!("an entry for listener {listener}, e.g. {listener}:SASL_SSL"),
            )
        })
    }

    /// One listener's security settings: `listener.name.<listener>.<setting>` over
    /// `<setting>`; `listener.name.<listener>.plain.sasl.jaas.config` is its PLAIN JAAS
    /// line (SCRAM's JAAS lines carry nothing a broker uses).
    pub fn security_for(&self, listener: &str) -> Result<SecurityConfig, ConfigError> {
        let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
        let mut overlay = self.raw.clone();
        for (k, v) in &self.raw {
            let Some(setting) = k.strip_prefix(&prefix) else {
                continue;
            };
            if setting.ends_with(".sasl.server.callback.handler.class") {
                continue;
            }
            match setting.strip_suffix(".sasl.jaas.config") {
                Some("plain") => {
                    overlay.insert("sasl.jaas.config".into(), v.clone());
                }
                Some("oauthbearer") => {
                    overlay.insert("sasl.oauthbearer.jaas.config".into(), v.clone());
                }
                Some(_) => {}
                None => {
                    overlay.insert(setting.to_string(), v.clone());
                }
            }
        }
        SecurityConfig::from_raw(&overlay)
    }
}

/// The address to advertise for each bound listener: the advertised listener of the same
/// name, else the listener itself; a wildcard host becomes this machine's host name, as
/// clients cannot connect to 0.0.0.0.
pub(super) fn advertise(listeners: &[Listener], given: &[Listener]) -> Vec<Listener> {
    listeners
        .iter()
        .map(|l| {
            let mut a = given
                .iter()
                .find(|g| g.name == l.name)
                .cloned()
                .unwrap_or_else(|| l.clone());
            if a.host == "0.0.0.0" || a.host == "::" || a.host.is_empty() {
                a.host = host_name();
            }
            a
        })
        .collect()
}

/// Checks `listener.name.<listener>.<setting>`: the setting must be one that may be given
/// per listener and the value one it takes. The error says why, and whether the key is
/// unknown rather than its value wrong.
pub(super) fn check_listener_setting(
    key: &str,
    rest: &str,
    value: &str,
) -> Result<(), (String, bool)> {
    let Some((_, setting)) = rest.split_once('.') else {
        return Err((format!("{key} names no setting"), true));
    };
    if let Some(mechanism) = setting.strip_suffix(".sasl.server.callback.handler.class") {
        return if mechanism != "oauthbearer" {
            Err(("a mechanism of oauthbearer".to_string(), true))
        } else if value.trim() == OAUTH_VALIDATOR {
            Ok(())
        } else {
            Err((
                format!("{OAUTH_VALIDATOR} (Stratus validates tokens against sasl.oauthbearer.jwks.endpoint.url)"),
                false,
            ))
        };
    }
    if let Some(mechanism) = setting.strip_suffix(".sasl.jaas.config") {
        return if JAAS_MECHANISMS.contains(&mechanism) {
            Ok(())
        } else {
            Err((
                format!("a mechanism of {}", JAAS_MECHANISMS.join(", ")),
                true,
            ))
        };
    }
    match def(setting) {
        Some(d) if per_listener(setting) => d.kind.check(value).map_err(|why| (why, false)),
        _ => Err((format!("{setting} cannot be set per listener"), true)),
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub(crate) fn parse_listeners(key: &str, v: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, addr) = part
            .split_once("://")
            .ok_or_else(|| invalid(key, part, "expected NAME://HOST:PORT"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, part, "expected NAME://HOST:PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|e| invalid(key, part, e))?;
        out.push(Listener {
            name: name.to_string(),
            host: if host.is_empty() {
                "0.0.0.0".into()
            } else {
                host.to_string()
            },
            port,
        });
    }
    if out.is_empty() {
        return Err(invalid(key, v, "no listener given"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_their_protocol_from_the_map_and_settings_per_listener() {
        let pairs = |extra: &[(&str, &str)]| {
            let mut v: Vec<(String, String)> = vec![
                (
                    "listeners".into(),
                    "PLAINTEXT://:9092,SSL://:9093,INTERNAL://:9094".into(),
                ),
                (
                    "listener.security.protocol.map".into(),
                    "PLAINTEXT:PLAINTEXT,SSL:SSL,INTERNAL:SASL_PLAINTEXT".into(),
                ),
                ("ssl.client.auth".into(), "requested".into()),
                (
                    "listener.name.ssl.ssl.client.auth".into(),
                    "required".into(),
                ),
                (
                    "listener.name.internal.plain.sasl.jaas.config".into(),
                    "X required user_a=\"secret-a\";".into(),
                ),
            ];
            v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            v
        };
        let s = Settings::from_pairs(pairs(&[])).unwrap();
        assert_eq!(s.security_protocol("SSL").unwrap(), SecurityProtocol::Ssl);
        assert_eq!(
            s.security_protocol("INTERNAL").unwrap(),
            SecurityProtocol::SaslPlaintext
        );
        assert_eq!(s.security_for("SSL").unwrap().ssl_client_auth, "required");
        assert_eq!(
            s.security_for("PLAINTEXT").unwrap().ssl_client_auth,
            "requested"
        );
        assert!(s
            .security_for("INTERNAL")
            .unwrap()
            .sasl_jaas_config
            .contains("user_a"));
        assert!(s.security_for("SSL").unwrap().sasl_jaas_config.is_empty());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("secret-a"),
            "Debug hides JAAS lines: {shown}"
        );

        let err =
            |extra: &[(&str, &str)]| Settings::from_pairs(pairs(extra)).unwrap_err().to_string();
        assert!(err(&[("listener.name.ssl.ssl.client.auth", "maybe")])
            .contains("required, requested, none"));
        assert!(err(&[("listener.name.ssl.num.partitions", "3")]).contains("unknown setting"));
        assert!(
            err(&[("listener.name.ssl.gssapi.sasl.jaas.config", "x")]).contains("unknown setting")
        );
        assert!(
            err(&[("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT")]).contains("INTERNAL")
        );
        assert!(err(&[("listener.security.protocol.map", "INTERNAL:TLS")]).contains("not 'TLS'"));
    }
}
