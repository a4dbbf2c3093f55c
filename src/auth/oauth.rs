//! OAUTHBEARER on a listener: the identity provider's keys (a JWKS file, re-read when it
//! changes, or an https endpoint, fetched at start, every
//! `sasl.oauthbearer.jwks.endpoint.refresh.ms`, and again when a token names a key it does
//! not hold) and the checks of `stratus_auth::oauth`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use stratus_auth::oauth::{self, Expectations, Jwks, Validated};
use stratus_auth::AuthError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::SecurityConfig;

/// Largest JWKS document accepted (from a file or an endpoint).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where the keys come from.
enum Source {
    File(PathBuf),
    Https {
        url: String,
        client: reqwest::Client,
    },
}

/// One listener's token validator.
pub struct OAuth {
    source: Source,
    expect: Expectations,
    jwks: RwLock<Option<Arc<Jwks>>>,
    /// The JWKS file's modification time when last read.
    file_mtime: Mutex<Option<SystemTime>>,
    /// When the https JWKS was last fetched (a token with an unknown key fetches it again,
    /// at most once a second).
    fetched: Mutex<Option<Instant>>,
    refresh: Duration,
    backoff: (Duration, Duration),
}

impl OAuth {
    /// From a listener's settings; an error names the setting at fault.
    pub fn from_settings(s: &SecurityConfig) -> Result<OAuth, String> {
        let url = s.sasl_oauthbearer_jwks_endpoint_url.trim();
        if url.is_empty() {
            return Err(
                "OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (a JWKS file or \
                        https URL): Stratus does not accept unsigned tokens"
                    .into(),
            );
        }
        let source = if let Some(rest) = url.strip_prefix("https://") {
            let mut builder = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(10));
            if let Some(ca) = jaas_truststore(s)? {
                let pem = std::fs::read(&ca)
                    .map_err(|e| format!("OAUTHBEARER ssl.truststore.location {ca}: {e}"))?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("OAUTHBEARER ssl.truststore.location {ca}: {e}"))?
                {
                    builder = builder.add_root_certificate(cert);
                }
            }
            let client = builder
                .build()
                .map_err(|e| format!("sasl.oauthbearer.jwks.endpoint.url: {e}"))?;
            if rest.is_empty() {
                return Err("sasl.oauthbearer.jwks.endpoint.url has no host".into());
            }
            Source::Https {
                url: url.to_string(),
                client,
            }
        } else if url.starts_with("http://") {
            return Err(
                "sasl.oauthbearer.jwks.endpoint.url must be https:// (or a file): keys fetched \
                 in clear text could be anyone's"
                    .into(),
            );
        } else {
            Source::File(PathBuf::from(url.strip_prefix("file://").unwrap_or(url)))
        };
        let audiences = s
            .sasl_oauthbearer_expected_audience
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        let oauth = OAuth {
            source,
            expect: Expectations {
                issuer: s.sasl_oauthbearer_expected_issuer.trim().to_string(),
                audiences,
                sub_claim: s.sasl_oauthbearer_sub_claim_name.trim().to_string(),
                clock_skew_s: s.sasl_oauthbearer_clock_skew_seconds,
            },
            jwks: RwLock::new(None),
            file_mtime: Mutex::new(None),
            fetched: Mutex::new(None),
            refresh: Duration::from_millis(s.sasl_oauthbearer_jwks_endpoint_refresh_ms),
            backoff: (
                Duration::from_millis(s.sasl_oauthbearer_jwks_endpoint_retry_backoff_ms),
                Duration::from_millis(s.sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms),
            ),
        };
        if let Source::File(path) = &oauth.source {
            // A missing or broken file stops the broker at start, as Kafka's does.
            oauth.reload_file().map_err(|e| {
                format!("sasl.oauthbearer.jwks.endpoint.url {}: {e}", path.display())
            })?;
        }
        Ok(oauth)
    }

    fn current(&self) -> Option<Arc<Jwks>> {
        self.jwks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, jwks: Jwks) {
        *self.jwks.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(jwks));
    }

    /// Reads the JWKS file if it changed since it was last read.
    fn reload_file(&self) -> Result<(), String> {
        let Source::File(path) = &self.source else {
            return Ok(());
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut last = self.file_mtime.lock().unwrap_or_else(|p| p.into_inner());
        if mtime.is_some() && *last == mtime && self.current().is_some() {
            return Ok(());
        }
        let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        if size > MAX_JWKS_BYTES as u64 {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let jwks = Jwks::parse(&text)?;
        self.set(jwks);
        *last = mtime;
        Ok(())
    }

    /// Fetches the https JWKS once.
    async fn fetch(&self) -> Result<(), String> {
        let Source::Https { url, client } = &self.source else {
            return self.reload_file();
        };
        *self.fetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut resp = client
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?;
        // A key set is a few KiB: a larger answer is refused before it is buffered.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|_| "the JWKS is not UTF-8".to_string())?;
        let jwks = Jwks::parse(&text)?;
        info!(url = %url, keys = jwks.len(), "OAUTHBEARER JWKS fetched");
        self.set(jwks);
        Ok(())
    }

    /// Keeps an https JWKS fresh until `cancel`: fetched at once (with backoff until it
    /// works), then every refresh interval.
    pub async fn run(self: Arc<Self>, listener: String, cancel: CancellationToken) {
        if !matches!(self.source, Source::Https { .. }) {
            return;
        }
        let mut backoff = self.backoff.0;
        loop {
            let wait = match self.fetch().await {
                Ok(()) => {
                    backoff = self.backoff.0;
                    self.refresh
                }
                Err(e) => {
                    warn!(%listener, error = %e, "OAUTHBEARER JWKS not fetched; OAUTHBEARER logins fail until it is");
                    let w = backoff;
                    backoff = (backoff * 2).min(self.backoff.1);
                    w
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Validates the client's first OAUTHBEARER message at `now_ms`.
    pub async fn authenticate(&self, msg: &[u8], now_ms: i64) -> Result<Validated, AuthError> {
        let jwt = oauth::parse_client_first(msg)?;
        if let Err(e) = self.reload_file() {
            warn!(error = %e, "OAUTHBEARER JWKS file not re-read; the keys read before stay");
        }
        let unknown_kid =
            oauth::key_id(&jwt).is_some_and(|kid| self.current().is_none_or(|j| !j.has_kid(&kid)));
        let recently = self
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        if unknown_kid && !recently && matches!(self.source, Source::Https { .. }) {
            // The provider may have rotated its keys: fetch them again.
            if let Err(e) = self.fetch().await {
                warn!(error = %e, "OAUTHBEARER JWKS not fetched again");
            }
        }
        let jwks = self.current().ok_or_else(|| {
            AuthError::Internal("the OAUTHBEARER JWKS is not available yet".into())
        })?;
        oauth::validate(&jwt, &jwks, &self.expect, now_ms)
    }
}

/// `ssl.truststore.location` of the listener's OAUTHBEARER JAAS line: the CA certificates
/// (PEM) an https JWKS endpoint is checked against, besides the system's.
fn jaas_truststore(s: &SecurityConfig) -> Result<Option<String>, String> {
    if s.sasl_oauthbearer_jaas_config.trim().is_empty() {
        return Ok(None);
    }
    let jaas = stratus_auth::jaas::Jaas::parse(&s.sasl_oauthbearer_jaas_config)
        .map_err(|e| format!("oauthbearer sasl.jaas.config: {e}"))?;
    Ok(jaas.options.get("ssl.truststore.location").cloned())
}
