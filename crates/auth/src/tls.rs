//! A listener's TLS server configuration (rustls), from Kafka's `ssl.*` settings: the key
//! and certificate chain (PEM, from one file or inline), the trusted CAs for client
//! certificates, `ssl.client.auth`, the protocol versions and cipher suites. The files it
//! was built from are remembered with their modification times, so that the broker can
//! build a new configuration when cert-manager rotates them in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the broker's key and certificate chain come from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `ssl.keystore.location` with `ssl.keystore.type=PEM`: the private key and the chain
    /// in one file, or a directory holding `tls.key` and `tls.crt` (a mounted
    /// `kubernetes.io/tls` Secret, as cert-manager writes it).
    PemFile(PathBuf),
    /// `ssl.keystore.key` and `ssl.keystore.certificate.chain`, inline PEM.
    PemInline {
        /// The private key.
        key: String,
        /// The certificate chain, the broker's own first.
        chain: String,
    },
    /// `ssl.keystore.location` with `ssl.keystore.type=PKCS12`, and its password.
    Pkcs12 {
        /// The keystore file.
        path: PathBuf,
        /// `ssl.keystore.password`.
        password: String,
    },
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::PemFile(p) => write!(f, "PemFile({})", p.display()),
            KeySource::PemInline { .. } => write!(f, "PemInline([hidden])"),
            KeySource::Pkcs12 { path, .. } => write!(f, "Pkcs12({}, [hidden])", path.display()),
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Clone, PartialEq, Eq)]
pub enum TrustSource {
    /// `ssl.truststore.location` with `ssl.truststore.type=PEM`.
    PemFile(PathBuf),
    /// `ssl.truststore.certificates`, inline PEM.
    PemInline(String),
    /// `ssl.truststore.location` with `ssl.truststore.type=PKCS12`, and its password.
    Pkcs12 {
        /// The truststore file.
        path: PathBuf,
        /// `ssl.truststore.password`.
        password: String,
    },
}

impl std::fmt::Debug for TrustSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustSource::PemFile(p) => write!(f, "PemFile({})", p.display()),
            TrustSource::PemInline(_) => write!(f, "PemInline(..)"),
            TrustSource::Pkcs12 { path, .. } => write!(f, "Pkcs12({}, [hidden])", path.display()),
        }
    }
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate the truststore verifies.
    Required,
    /// A client may present one; if it does, it must verify.
    Requested,
    /// Client certificates are not asked for.
    None,
}

/// Everything a listener's TLS configuration is built from.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The broker's key and chain.
    pub key: KeySource,
    /// CAs that sign client certificates (needed unless `client_auth` is `None`).
    pub trust: Option<TrustSource>,
    /// Whether client certificates are asked for.
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`: `TLSv1.2`, `TLSv1.3`.
    pub protocols: Vec<String>,
    /// `ssl.cipher.suites` by IANA name; empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// `ssl.key.password`: the password of an encrypted PEM private key.
    pub key_password: Option<String>,
}

impl std::fmt::Debug for TlsSettings {
    /// Never the key password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("key", &self.key)
            .field("trust", &self.trust)
            .field("client_auth", &self.client_auth)
            .field("protocols", &self.protocols)
            .field("cipher_suites", &self.cipher_suites)
            .finish_non_exhaustive()
    }
}

/// A built configuration and the files (with their modification times) it came from.
pub struct Built {
    /// The rustls configuration.
    pub config: Arc<ServerConfig>,
    /// When the broker's own certificate expires (seconds since the Unix epoch).
    pub not_after: Option<i64>,
    files: Vec<(PathBuf, Option<SystemTime>)>,
}

impl Built {
    /// Whether a file it was built from changed (or appeared, or went) since.
    pub fn files_changed(&self) -> bool {
        self.files.iter().any(|(p, t)| modified(p) != *t)
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl TlsSettings {
    /// Builds the configuration; the error names the file or setting that is wrong.
    pub fn build(&self) -> Result<Built, String> {
        let mut files = Vec::new();
        let (chain, key) = match &self.key {
            KeySource::PemFile(path) => {
                let text = read_keystore(path, &mut files)?;
                let what = format!("ssl.keystore.location {}", path.display());
                (
                    certs(&text, &what)?,
                    private_key(&text, &what, self.key_password.as_deref())?,
                )
            }
            KeySource::PemInline { key, chain } => (
                certs(chain, "ssl.keystore.certificate.chain")?,
                private_key(key, "ssl.keystore.key", self.key_password.as_deref())?,
            ),
            KeySource::Pkcs12 { path, password } => {
                files.push((path.clone(), modified(path)));
                pkcs12_key(path, password)?
            }
        };
        let provider = Arc::new(self.provider()?);
        let versions = self.versions()?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| {
                format!("ssl.enabled.protocols and ssl.cipher.suites do not agree: {e}")
            })?;
        // A configured truststore is read (and checked) even when client certificates are
        // not asked for, as Kafka does: a wrong password or file fails at startup.
        let trusted = match &self.trust {
            Some(TrustSource::PemFile(path)) => {
                files.push((path.clone(), modified(path)));
                let what = format!("ssl.truststore.location {}", path.display());
                Some((certs(&read(path, "ssl.truststore.location")?, &what)?, what))
            }
            Some(TrustSource::PemInline(text)) => Some((
                certs(text, "ssl.truststore.certificates")?,
                "ssl.truststore.certificates".to_string(),
            )),
            Some(TrustSource::Pkcs12 { path, password }) => {
                files.push((path.clone(), modified(path)));
                let what = format!("ssl.truststore.location {}", path.display());
                Some((pkcs12_certs(path, password)?, what))
            }
            None => None,
        };
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let Some((roots, source)) = trusted else {
                    return Err(
                        "ssl.client.auth asks for client certificates but no truststore is set \
                         (ssl.truststore.location or ssl.truststore.certificates)"
                            .into(),
                    );
                };
                let mut store = RootCertStore::empty();
                for c in roots {
                    store
                        .add(c)
                        .map_err(|e| format!("{source}: a CA certificate is not usable: {e}"))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider);
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("{source}: cannot verify client certificates: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let not_after = chain.first().and_then(|c| {
            x509_parser::parse_x509_certificate(c.as_ref())
                .ok()
                .map(|(_, cert)| cert.validity().not_after.timestamp())
        });
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
        Ok(Built {
            config: Arc::new(config),
            not_after,
            files,
        })
    }

    fn versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
        let mut out = Vec::new();
        for p in &self.protocols {
            match p.trim() {
                "TLSv1.3" => out.push(&rustls::version::TLS13),
                "TLSv1.2" => out.push(&rustls::version::TLS12),
                "" => {}
                other => {
                    return Err(format!(
                    "ssl.enabled.protocols: {other} is not supported; use TLSv1.2 and/or TLSv1.3"
                ))
                }
            }
        }
        if out.is_empty() {
            return Err(
                "ssl.enabled.protocols names no protocol; use TLSv1.2 and/or TLSv1.3".into(),
            );
        }
        Ok(out)
    }

    fn provider(&self) -> Result<CryptoProvider, String> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if self.cipher_suites.iter().all(|s| s.trim().is_empty()) {
            return Ok(provider);
        }
        let all = provider.cipher_suites.clone();
        let mut chosen = Vec::new();
        for name in self
            .cipher_suites
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let found = all.iter().find(|s| iana_name(s) == name).ok_or_else(|| {
                let known: Vec<String> = all.iter().map(iana_name).collect();
                format!(
                    "ssl.cipher.suites: {name} is not supported; supported: {}",
                    known.join(", ")
                )
            })?;
            chosen.push(*found);
        }
        provider.cipher_suites = chosen;
        Ok(provider)
    }
}

/// A suite's IANA name (rustls writes TLS 1.3 suites `TLS13_…`; IANA and Kafka `TLS_…`).
fn iana_name(s: &rustls::SupportedCipherSuite) -> String {
    let name = format!("{:?}", s.suite());
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// A PEM keystore: one file, or a directory with `tls.key` and `tls.crt`; each file read is
/// added to `files` (watched for changes).
fn read_keystore(
    path: &Path,
    files: &mut Vec<(PathBuf, Option<SystemTime>)>,
) -> Result<String, String> {
    if !path.is_dir() {
        files.push((path.to_path_buf(), modified(path)));
        return read(path, "ssl.keystore.location");
    }
    let mut text = String::new();
    for name in ["tls.key", "tls.crt"] {
        let file = path.join(name);
        files.push((file.clone(), modified(&file)));
        text.push_str(&read(&file, "ssl.keystore.location")?);
        text.push('\n');
    }
    Ok(text)
}

fn read(path: &Path, setting: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{setting} {}: {e}", path.display()))
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: unreadable PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no CERTIFICATE in it"));
    }
    Ok(certs)
}

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The private key of a PEM text; an encrypted PKCS#8 key is decrypted with `password`
/// (`ssl.key.password`).
fn private_key(
    pem: &str,
    what: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, String> {
    if let Some(start) = pem.find(ENCRYPTED_BEGIN) {
        let end = pem[start..]
            .find(ENCRYPTED_END)
            .map(|e| start + e + ENCRYPTED_END.len())
            .ok_or_else(|| format!("{what}: an ENCRYPTED PRIVATE KEY block is not closed"))?;
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return Err(format!(
                "{what}: the private key is encrypted: set ssl.key.password"
            ));
        };
        let (_, doc) = pkcs8::Document::from_pem(&pem[start..end])
            .map_err(|e| format!("{what}: unreadable ENCRYPTED PRIVATE KEY: {e}"))?;
        let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| format!("{what}: unreadable ENCRYPTED PRIVATE KEY: {e}"))?;
        let key = encrypted.decrypt(password).map_err(|_| {
            format!(
                "{what}: the private key does not decrypt with ssl.key.password (wrong password?)"
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(key.as_bytes().to_vec().into()));
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("{what}: no readable PRIVATE KEY in it: {e}"))
}

fn pkcs12(path: &Path, password: &str, setting: &str) -> Result<p12_keystore::KeyStore, String> {
    let data = std::fs::read(path).map_err(|e| format!("{setting} {}: {e}", path.display()))?;
    p12_keystore::KeyStore::from_pkcs12(&data, password).map_err(|e| {
        format!(
            "{setting} {}: not a PKCS12 store this password opens ({e})",
            path.display()
        )
    })
}

/// The key and chain of a PKCS12 keystore (its first key entry).
fn pkcs12_key(
    path: &Path,
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let store = pkcs12(path, password, "ssl.keystore.location")?;
    let (_, chain) = store.private_key_chain().ok_or_else(|| {
        format!(
            "ssl.keystore.location {}: no private key in it",
            path.display()
        )
    })?;
    let certs: Vec<CertificateDer<'static>> = chain
        .chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "ssl.keystore.location {}: the key has no certificate",
            path.display()
        ));
    }
    Ok((certs, PrivateKeyDer::Pkcs8(chain.key().to_vec().into())))
}

/// The trusted certificates of a PKCS12 truststore.
fn pkcs12_certs(path: &Path, password: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let store = pkcs12(path, password, "ssl.truststore.location")?;
    let certs: Vec<CertificateDer<'static>> = store
        .entries()
        .filter_map(|(_, e)| match e {
            p12_keystore::KeyStoreEntry::Certificate(c) => {
                Some(CertificateDer::from(c.as_der().to_vec()))
            }
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "ssl.truststore.location {}: no trusted certificate in it (as for Java, a \
             certificate needs the trusted-certificate attribute: add it with keytool \
             -importcert -storetype PKCS12)",
            path.display()
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    /// A CA, and a server key and certificate it signed: (ca pem, server key pem, server chain pem).
    fn pki() -> (String, String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = server.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (ca_cert.pem(), key.serialize_pem(), cert.pem())
    }

    fn settings(key: KeySource) -> TlsSettings {
        TlsSettings {
            key,
            trust: None,
            client_auth: ClientAuth::None,
            protocols: vec!["TLSv1.2".into(), "TLSv1.3".into()],
            cipher_suites: vec![],
            key_password: None,
        }
    }

    #[test]
    fn a_pem_file_with_key_and_chain_builds_and_its_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key, chain) = pki();
        let path = dir.path().join("server.pem");
        std::fs::write(&path, format!("{key}{chain}")).unwrap();
        let built = settings(KeySource::PemFile(path.clone())).build().unwrap();
        assert!(!built.files_changed());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (_, key2, chain2) = pki();
        std::fs::write(&path, format!("{chain2}{key2}")).unwrap();
        assert!(built.files_changed(), "a rewritten file is noticed");
        settings(KeySource::PemFile(path))
            .build()
            .expect("the chain may come first");
    }

    #[test]
    fn a_directory_with_tls_key_and_tls_crt_is_a_keystore() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key, chain) = pki();
        std::fs::write(dir.path().join("tls.key"), &key).unwrap();
        std::fs::write(dir.path().join("tls.crt"), &chain).unwrap();
        let built = settings(KeySource::PemFile(dir.path().to_path_buf()))
            .build()
            .unwrap();
        assert!(built.not_after.is_some());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (_, _, chain2) = pki();
        std::fs::write(dir.path().join("tls.crt"), chain2).unwrap();
        assert!(built.files_changed(), "a renewed certificate is noticed");
        std::fs::remove_file(dir.path().join("tls.key")).unwrap();
        let err = settings(KeySource::PemFile(dir.path().to_path_buf()))
            .build()
            .err()
            .unwrap();
        assert!(err.contains("tls.key"), "{err}");
    }

    #[test]
    fn errors_name_the_setting_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, key, chain) = pki();
        let missing = settings(KeySource::PemFile(dir.path().join("nope.pem")));
        assert!(missing
            .build()
            .err()
            .unwrap()
            .contains("ssl.keystore.location"));
        let only_cert = dir.path().join("cert.pem");
        std::fs::write(&only_cert, &chain).unwrap();
        let e = settings(KeySource::PemFile(only_cert))
            .build()
            .err()
            .unwrap();
        assert!(e.contains("PRIVATE KEY"), "{e}");
        let (_, other_key, _) = pki();
        let e = settings(KeySource::PemInline {
            key: other_key,
            chain: chain.clone(),
        })
        .build()
        .err()
        .unwrap();
        assert!(e.contains("does not fit"), "{e}");
        let mut s = settings(KeySource::PemInline {
            key: key.clone(),
            chain: chain.clone(),
        });
        s.client_auth = ClientAuth::Required;
        assert!(s.build().err().unwrap().contains("truststore"));
        s.trust = Some(TrustSource::PemInline(ca));
        s.build().expect("with a truststore");
        s.protocols = vec!["TLSv1.1".into()];
        assert!(s
            .build()
            .err()
            .unwrap()
            .contains("TLSv1.1 is not supported"));
        s.protocols = vec!["TLSv1.3".into()];
        s.cipher_suites = vec!["TLS_NULL_WITH_NULL_NULL".into()];
        let e = s.build().err().unwrap();
        assert!(
            e.contains("TLS_AES_128_GCM_SHA256"),
            "the error lists what is supported: {e}"
        );
        s.cipher_suites = vec!["TLS_AES_256_GCM_SHA384".into()];
        s.build().expect("an IANA TLS 1.3 suite name");
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = settings(KeySource::PemInline {
            key: encrypted.into(),
            chain,
        })
        .build()
        .err()
        .unwrap();
        assert!(e.contains("ssl.key.password"), "{e}");
    }

    #[test]
    fn the_subject_of_a_client_certificate_is_written_as_rfc_2253() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        // In the certificate's order, most significant first (rcgen's default holds a CN).
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name
            .push(DnType::OrganizationName, "Acme, Inc");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "eng");
        p.distinguished_name.push(DnType::CommonName, "alice");
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(
            crate::principal::subject_dn(cert.der()).unwrap(),
            "CN=alice,OU=eng,O=Acme\\, Inc,C=US"
        );
        assert!(crate::principal::subject_dn(b"not a certificate").is_err());
    }
}
