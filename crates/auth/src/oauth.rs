//! SASL OAUTHBEARER (RFC 7628) on the broker's side, as Kafka's
//! `OAuthBearerValidatorCallbackHandler` checks it: the client's first message carries a
//! JWT; its signature must verify with a key of the identity provider's JWKS (RS256/384/512,
//! PS256/384/512, ES256/384, EdDSA; never `none`), it must have `exp` and `iat`, not be
//! expired or not yet valid (with clock skew), name the expected issuer when one is set,
//! name one of the expected audiences (and have no `aud` when none is set, as jose4j has it
//! in Kafka), and carry the subject claim, which becomes the principal.

use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use crate::AuthError;

/// The mechanism's name.
pub const OAUTHBEARER: &str = "OAUTHBEARER";

/// One verification key of a JWKS.
#[derive(Debug, Clone)]
pub struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: Key,
}

#[derive(Debug, Clone)]
enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { curve: String, point: Vec<u8> },
    Ed25519(Vec<u8>),
}

/// A JSON Web Key Set: the identity provider's public keys.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

fn b64(v: &Value, field: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a key has no '{field}'"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("a key's '{field}' is not base64url"))
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`). Keys that are not for signatures or of
    /// a type this broker cannot verify with are skipped; none left is an error.
    pub fn parse(text: &str) -> Result<Jwks, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no \"keys\" array")?;
        let mut keys = Vec::new();
        for k in list {
            if k.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let key = match k.get("kty").and_then(Value::as_str) {
                Some("RSA") => Key::Rsa {
                    n: b64(k, "n")?,
                    e: b64(k, "e")?,
                },
                Some("EC") => {
                    let curve = k
                        .get("crv")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let mut point = vec![4u8];
                    point.extend(b64(k, "x")?);
                    point.extend(b64(k, "y")?);
                    Key::Ec { curve, point }
                }
                Some("OKP") if k.get("crv").and_then(Value::as_str) == Some("Ed25519") => {
                    Key::Ed25519(b64(k, "x")?)
                }
                _ => continue,
            };
            keys.push(Jwk {
                kid: k.get("kid").and_then(Value::as_str).map(str::to_string),
                alg: k.get("alg").and_then(Value::as_str).map(str::to_string),
                key,
            });
        }
        if keys.is_empty() {
            return Err(
                "no signature key this broker can use (RSA, EC P-256/P-384, Ed25519)".into(),
            );
        }
        Ok(Jwks { keys })
    }

    /// Whether a key has this id.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// `sasl.oauthbearer.expected.issuer` (empty: any).
    pub issuer: String,
    /// `sasl.oauthbearer.expected.audience` (empty: any).
    pub audiences: Vec<String>,
    /// `sasl.oauthbearer.sub.claim.name`.
    pub sub_claim: String,
    /// `sasl.oauthbearer.clock.skew.seconds`.
    pub clock_skew_s: i64,
}

/// A token that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The principal's name (the subject claim).
    pub principal: String,
    /// When the token expires (ms since the epoch).
    pub expires_ms: i64,
}

/// The header of a token, for choosing the key (the key id, if any).
pub fn key_id(jwt: &str) -> Option<String> {
    let header = jwt.split('.').next()?;
    let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    h.get("kid").and_then(Value::as_str).map(str::to_string)
}

/// The JWT of the client's first message: `n,[a=authzid],` then `auth=Bearer <token>` and
/// any extensions, each ended by 0x01, the last by two.
pub fn parse_client_first(msg: &[u8]) -> Result<String, AuthError> {
    let bad = || AuthError::Invalid("malformed OAUTHBEARER client message".into());
    let text = std::str::from_utf8(msg).map_err(|_| bad())?;
    let rest = text.strip_prefix("n,").ok_or_else(bad)?;
    let (_authzid, rest) = rest.split_once(',').ok_or_else(bad)?;
    let rest = rest.strip_prefix('\x01').ok_or_else(bad)?;
    let body = rest.strip_suffix("\x01\x01").ok_or_else(bad)?;
    for kv in body.split('\x01') {
        if let Some(auth) = kv.strip_prefix("auth=") {
            let (scheme, token) = auth.split_once(' ').ok_or_else(bad)?;
            if !scheme.eq_ignore_ascii_case("Bearer") {
                return Err(bad());
            }
            let token = token.trim();
            if token.is_empty() {
                return Err(bad());
            }
            return Ok(token.to_string());
        }
    }
    Err(AuthError::Invalid(
        "OAUTHBEARER client message has no auth=Bearer token".into(),
    ))
}

fn failed(why: impl std::fmt::Display) -> AuthError {
    AuthError::Failed(format!("Could not validate the access token: {why}"))
}

/// Checks `jwt` against `jwks` and `expect` at `now_ms`.
pub fn validate(
    jwt: &str,
    jwks: &Jwks,
    expect: &Expectations,
    now_ms: i64,
) -> Result<Validated, AuthError> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(failed("not a signed JWT (three base64url parts)"));
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| failed("not base64url"))
    };
    let header: Value =
        serde_json::from_slice(&decode(h)?).map_err(|_| failed("the header is not JSON"))?;
    let claims: Value =
        serde_json::from_slice(&decode(p)?).map_err(|_| failed("the claims are not JSON"))?;
    let sig = decode(s)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("none");
    let kid = header.get("kid").and_then(Value::as_str);
    verify(
        jwks,
        alg,
        kid,
        &jwt.as_bytes()[..h.len() + 1 + p.len()],
        &sig,
    )?;

    let now_s = now_ms / 1000;
    let skew = expect.clock_skew_s;
    let time = |name: &str| claims.get(name).and_then(Value::as_f64).map(|v| v as i64);
    let exp = time("exp").ok_or_else(|| failed("no exp claim"))?;
    if time("iat").is_none() {
        return Err(failed("no iat claim"));
    }
    if now_s > exp + skew {
        return Err(failed("the token expired"));
    }
    if let Some(nbf) = time("nbf") {
        if now_s + skew < nbf {
            return Err(failed("the token is not valid yet (nbf)"));
        }
    }
    if !expect.issuer.is_empty()
        && claims.get("iss").and_then(Value::as_str) != Some(expect.issuer.as_str())
    {
        return Err(failed("the issuer (iss) is not the expected one"));
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if expect.audiences.is_empty() {
        // As Kafka (jose4j): a token meant for some audience is not taken by a broker
        // that was not told it is one.
        if claims.get("aud").is_some() {
            return Err(failed(
                "the token names an audience (aud) but sasl.oauthbearer.expected.audience is not set",
            ));
        }
    } else if !aud.iter().any(|a| expect.audiences.iter().any(|e| e == a)) {
        return Err(failed("no expected audience (aud)"));
    }
    let sub = claims
        .get(&expect.sub_claim)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| failed(format!("no '{}' claim", expect.sub_claim)))?;
    Ok(Validated {
        principal: sub.to_string(),
        expires_ms: exp.saturating_mul(1000),
    })
}

/// Verifies a signature with the key `kid` names (or the only key that fits `alg`).
fn verify(
    jwks: &Jwks,
    alg: &str,
    kid: Option<&str>,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), AuthError> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(failed("unsigned tokens (alg none) are refused"));
    }
    let fits = |k: &&Jwk| {
        k.alg.as_deref().is_none_or(|a| a == alg)
            && match (&k.key, alg) {
                (Key::Rsa { .. }, a) => a.starts_with("RS") || a.starts_with("PS"),
                (Key::Ec { curve, .. }, "ES256") => curve == "P-256",
                (Key::Ec { curve, .. }, "ES384") => curve == "P-384",
                (Key::Ed25519(_), "EdDSA") => true,
                _ => false,
            }
    };
    let candidates: Vec<&Jwk> = match kid {
        Some(kid) => jwks
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .filter(fits)
            .collect(),
        None => jwks.keys.iter().filter(fits).collect(),
    };
    let key = match candidates.as_slice() {
        [k] => *k,
        [] => {
            return Err(failed(match kid {
                Some(kid) => format!("no {alg} key with id {kid:?} in the JWKS"),
                None => format!("no {alg} key in the JWKS"),
            }))
        }
        _ => {
            return Err(failed(
                "the token names no key id and the JWKS has several keys",
            ))
        }
    };
    let ok = match (&key.key, alg) {
        (Key::Rsa { n, e }, _) => {
            let params: &RsaParameters = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
                other => return Err(failed(format!("algorithm {other} is not supported"))),
            };
            RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok()
        }
        (Key::Ec { point, .. }, "ES256") => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        (Key::Ec { point, .. }, _) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        (Key::Ed25519(x), _) => UnparsedPublicKey::new(&signature::ED25519, x)
            .verify(msg, sig)
            .is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(failed("the signature does not verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    struct Issuer {
        ec: EcdsaKeyPair,
    }

    impl Issuer {
        fn new() -> Self {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .unwrap();
            let ec = EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                pkcs8.as_ref(),
            )
            .unwrap();
            Issuer { ec }
        }

        fn jwks(&self, kid: &str) -> Jwks {
            let p = self.ec.public_key().as_ref();
            let doc = serde_json::json!({"keys": [{
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65]),
            }]});
            Jwks::parse(&doc.to_string()).unwrap()
        }

        fn token(&self, kid: &str, claims: Value) -> String {
            let head = enc(&serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JWT"}));
            let input = format!("{head}.{}", enc(&claims));
            let sig = self
                .ec
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://idp".into(),
            audiences: vec!["kafka".into()],
            sub_claim: "sub".into(),
            clock_skew_s: 30,
        }
    }

    const NOW: i64 = 1_800_000_000_000;

    fn claims(exp_s: i64) -> Value {
        serde_json::json!({"sub": "alice", "iss": "https://idp", "aud": ["kafka", "x"],
                           "iat": NOW / 1000 - 10, "exp": exp_s})
    }

    #[test]
    fn a_good_token_gives_its_subject() {
        let i = Issuer::new();
        let t = i.token("k1", claims(NOW / 1000 + 600));
        let v = validate(&t, &i.jwks("k1"), &expect(), NOW).unwrap();
        assert_eq!(v.principal, "alice");
        assert_eq!(v.expires_ms, (NOW / 1000 + 600) * 1000);
        assert_eq!(key_id(&t).as_deref(), Some("k1"));
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let i = Issuer::new();
        let jwks = i.jwks("k1");
        let reason =
            |t: &str, e: &Expectations| validate(t, &jwks, e, NOW).unwrap_err().to_string();
        assert!(reason(&i.token("k1", claims(NOW / 1000 - 60)), &expect()).contains("expired"));
        // Within the clock skew: still good.
        assert!(validate(
            &i.token("k1", claims(NOW / 1000 - 10)),
            &jwks,
            &expect(),
            NOW
        )
        .is_ok());
        let other = Issuer::new();
        assert!(
            reason(&other.token("k1", claims(NOW / 1000 + 60)), &expect()).contains("signature")
        );
        assert!(reason(&i.token("k2", claims(NOW / 1000 + 60)), &expect()).contains("no ES256 key"));
        let mut wrong_aud = expect();
        wrong_aud.audiences = vec!["billing".into()];
        assert!(reason(&i.token("k1", claims(NOW / 1000 + 60)), &wrong_aud).contains("audience"));
        let mut wrong_iss = expect();
        wrong_iss.issuer = "https://elsewhere".into();
        assert!(reason(&i.token("k1", claims(NOW / 1000 + 60)), &wrong_iss).contains("issuer"));
        let mut no_audience = expect();
        no_audience.audiences.clear();
        assert!(
            reason(&i.token("k1", claims(NOW / 1000 + 60)), &no_audience)
                .contains("expected.audience")
        );
        let mut by_email = expect();
        by_email.sub_claim = "email".into();
        assert!(reason(&i.token("k1", claims(NOW / 1000 + 60)), &by_email).contains("'email'"));
        let none = format!(
            "{}.{}.",
            enc(&serde_json::json!({"alg": "none"})),
            enc(&claims(NOW / 1000 + 60))
        );
        assert!(reason(&none, &expect()).contains("alg none"));
        assert!(reason("garbage", &expect()).contains("three"));
    }

    #[test]
    fn ed25519_keys_verify() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let doc = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(kp.public_key().as_ref())}]});
        let jwks = Jwks::parse(&doc.to_string()).unwrap();
        let input = format!(
            "{}.{}",
            enc(&serde_json::json!({"alg": "EdDSA"})),
            enc(&claims(NOW / 1000 + 60))
        );
        let t = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(kp.sign(input.as_bytes()).as_ref())
        );
        assert_eq!(
            validate(&t, &jwks, &expect(), NOW).unwrap().principal,
            "alice"
        );
    }

    #[test]
    fn the_client_message_is_parsed_as_rfc_7628_writes_it() {
        assert_eq!(
            parse_client_first(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(
            parse_client_first(b"n,a=alice,\x01host=x\x01auth=Bearer t.o.k\x01ext=1\x01\x01")
                .unwrap(),
            "t.o.k"
        );
        for bad in [
            &b""[..],
            b"n,,auth=Bearer x",
            b"n,,\x01auth=Basic x\x01\x01",
            b"\xff",
        ] {
            assert!(parse_client_first(bad).is_err());
        }
    }

    #[test]
    fn jwks_documents_are_checked() {
        assert!(Jwks::parse("{}").is_err());
        assert!(Jwks::parse(r#"{"keys": [{"kty": "oct", "k": "AA"}]}"#).is_err());
        assert!(Jwks::parse(r#"{"keys": [{"kty": "RSA", "n": "AQAB"}]}"#).is_err());
    }
}
