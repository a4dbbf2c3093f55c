//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them: the server
//! side of the exchange, and the credentials it checks against (a salt, the stored and
//! server keys, an iteration count; never the password).
//!
//! The exchange is two client messages: [`ServerExchange::first`] reads the client-first
//! message (the caller then looks the user's credential up) and answers with the
//! server-first message; [`ServerExchange::finish`] checks the client's proof and answers
//! with the server signature. No channel binding; Kafka's delegation-token extension
//! (`tokenauth`) is refused.

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::AuthError;

/// The fewest iterations Kafka accepts for a SCRAM credential.
pub const MIN_ITERATIONS: u32 = 4096;
/// The most iterations Kafka accepts for a SCRAM credential.
pub const MAX_ITERATIONS: u32 = 16384;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Mechanism {
    /// Both, in Kafka's order.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// Its SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// From its SASL name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's numeric type in DescribeUserScramCredentials / AlterUserScramCredentials.
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// From Kafka's numeric type.
    pub fn from_kafka_type(t: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// Output length of its hash.
    pub fn hash_len(self) -> usize {
        self.digest_alg().output_len()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_alg(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_alg(), data).as_ref().to_vec()
    }

    /// `Hi(password, salt, iterations)`: the salted password (PBKDF2).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        let iterations =
            std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2_alg(), iterations, salt, password, &mut out);
        out
    }
}

/// What the server keeps of a user's SCRAM password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The mechanism it is for.
    pub mechanism: Mechanism,
    /// Random salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl Credential {
    /// From a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted(
        mechanism: Mechanism,
        salt: Vec<u8>,
        salted: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = mechanism.hmac(salted, b"Client Key");
        Credential {
            mechanism,
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    /// From a password, with a fresh random salt.
    pub fn from_password(
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Self, AuthError> {
        let salt = random_bytes(32)?;
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Ok(Self::from_salted(mechanism, salt, &salted, iterations))
    }
}

/// Random bytes from the system's generator.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, AuthError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut out = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| AuthError::Internal("no random bytes from the system".into()))?;
    Ok(out)
}

/// The client-first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user (SASL name decoded).
    pub username: String,
    /// The client's nonce.
    nonce: String,
    /// `n,,` or `n,a=…,`: echoed base64-encoded in the client-final message.
    gs2_header: String,
    /// The message without its GS2 header (part of the signed AuthMessage).
    bare: String,
}

/// The server's side of one SCRAM exchange, between its two messages.
pub struct ServerExchange {
    first: ClientFirst,
    credential: Credential,
    server_first: String,
    nonce: String,
}

/// Reads a client-first message: `gs2-header n=user,r=nonce[,ext...]`.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, AuthError> {
    let text =
        std::str::from_utf8(msg).map_err(|_| bad("the client-first message is not UTF-8"))?;
    let mut parts = text.splitn(3, ',');
    let cbind = parts.next().unwrap_or("");
    let authzid = parts.next().ok_or_else(|| bad("no GS2 header"))?;
    let bare = parts.next().ok_or_else(|| bad("no client-first message"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(bad("channel binding is not supported")),
        _ => return Err(bad("invalid GS2 header")),
    }
    let authzid = match authzid {
        "" => None,
        a => Some(sasl_name(
            a.strip_prefix("a=").ok_or_else(|| bad("invalid authzid"))?,
        )?),
    };
    let mut username = None;
    let mut nonce = None;
    for (i, attr) in bare.split(',').enumerate() {
        match (i, attr.split_once('=')) {
            (0, Some(("n", v))) => username = Some(sasl_name(v)?),
            (1, Some(("r", v))) if !v.is_empty() => nonce = Some(v.to_string()),
            (0 | 1, _) => return Err(bad("expected n=user,r=nonce")),
            (_, Some(("tokenauth", v))) if v.eq_ignore_ascii_case("true") => {
                return Err(bad("delegation tokens are not supported"))
            }
            _ => {} // other extensions carry nothing this server uses
        }
    }
    let (Some(username), Some(nonce)) = (username, nonce) else {
        return Err(bad("expected n=user,r=nonce"));
    };
    if authzid.as_ref().is_some_and(|a| *a != username) {
        return Err(AuthError::Failed(
            "the authorization id differs from the user name".into(),
        ));
    }
    Ok(ClientFirst {
        username,
        nonce,
        gs2_header: format!(
            "{cbind},{authzid},",
            authzid = text.split(',').nth(1).unwrap_or("")
        ),
        bare: bare.to_string(),
    })
}

impl ServerExchange {
    /// Answers a client-first message with the server-first message, for `credential`
    /// (the user's, for the mechanism the client chose).
    pub fn first(first: ClientFirst, credential: Credential) -> Result<(Self, Vec<u8>), AuthError> {
        let server_nonce = B64.encode(random_bytes(18)?).replace(['+', '/'], "x");
        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let out = server_first.clone().into_bytes();
        Ok((
            ServerExchange {
                first,
                credential,
                server_first,
                nonce,
            },
            out,
        ))
    }

    /// The user being authenticated.
    pub fn username(&self) -> &str {
        &self.first.username
    }

    /// Checks the client-final message `c=…,r=…[,ext],p=proof`; answers with the
    /// server-final message `v=signature` when the proof is right.
    pub fn finish(self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        let text =
            std::str::from_utf8(msg).map_err(|_| bad("the client-final message is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| bad("the client-final message has no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) => channel = Some(v),
                Some(("r", v)) => nonce = Some(v),
                _ => {}
            }
        }
        if channel != Some(B64.encode(&self.first.gs2_header).as_str()) {
            return Err(bad("the channel binding does not match the GS2 header"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(bad("the nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| bad("the proof is not base64"))?;
        let m = self.credential.mechanism;
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let client_signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(invalid_credentials(m));
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !constant_time_eq(&m.hash(&client_key), &self.credential.stored_key) {
            return Err(invalid_credentials(m));
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The failure a client sees for a wrong user or password, as Kafka words it.
pub fn invalid_credentials(m: Mechanism) -> AuthError {
    AuthError::Failed(format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
        m.name()
    ))
}

/// Compares without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes a SASL name: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn sasl_name(s: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(bad("invalid escape in a user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn bad(why: &str) -> AuthError {
    AuthError::Invalid(format!("Invalid SCRAM message: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, as RFC 5802 computes it.
    fn client_final(
        m: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let attrs: Vec<(&str, &str)> = server_first
            .split(',')
            .filter_map(|a| a.split_once('='))
            .collect();
        let get = |k: &str| {
            attrs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| *v)
                .unwrap()
        };
        let salt = B64.decode(get("s")).unwrap();
        let iterations: u32 = get("i").parse().unwrap();
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={}", get("r"));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = m.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        let expected_v = m.hmac(&server_key, auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            expected_v,
        )
    }

    fn exchange(
        m: Mechanism,
        stored_password: &str,
        given_password: &str,
    ) -> Result<(), AuthError> {
        let credential = Credential::from_password(m, stored_password, MIN_ITERATIONS).unwrap();
        let bare = "n=al=2Cice,r=fyko+d2lbbFgONRv9qkxdawL";
        let first = parse_client_first(format!("n,,{bare}").as_bytes())?;
        assert_eq!(first.username, "al,ice");
        let (ex, server_first) = ServerExchange::first(first, credential)?;
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
        let (msg, expected_v) = client_final(m, given_password, bare, &server_first);
        let last = ex.finish(msg.as_bytes())?;
        assert_eq!(last, format!("v={}", B64.encode(expected_v)).into_bytes());
        Ok(())
    }

    #[test]
    fn the_right_password_passes_with_both_mechanisms_and_the_server_proves_it_knows_the_key() {
        for m in Mechanism::ALL {
            exchange(m, "s3cret", "s3cret").unwrap();
        }
    }

    #[test]
    fn a_wrong_password_fails_with_kafkas_message() {
        for m in Mechanism::ALL {
            match exchange(m, "s3cret", "guess") {
                Err(AuthError::Failed(msg)) => assert!(msg.contains(m.name()), "{msg}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn rfc_7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let cred = Credential::from_salted(m, salt, &salted, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let ex = ServerExchange {
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            first,
            credential: cred,
        };
        let last = ex
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(
            last,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    #[test]
    fn malformed_messages_are_refused_without_panicking() {
        for msg in [
            &b""[..],
            b"n",
            b"p=tls-unique,,n=u,r=x",
            b"n,,r=x,n=u",
            b"n,,n=a=ZZb,r=x",
            b"n,a=other,n=user,r=x",
            b"n,,n=user,r=x,tokenauth=true",
            b"\xff\xfe",
        ] {
            assert!(parse_client_first(msg).is_err(), "{msg:?}");
        }
        let cred = Credential::from_password(Mechanism::Sha256, "p", MIN_ITERATIONS).unwrap();
        let first = parse_client_first(b"n,,n=u,r=abc").unwrap();
        let (ex, _) = ServerExchange::first(first.clone(), cred.clone()).unwrap();
        assert!(
            ex.finish(b"c=biws,r=abc,p=AAAA").is_err(),
            "a nonce without the server's part"
        );
        let (ex, _) = ServerExchange::first(first, cred).unwrap();
        assert!(ex.finish(b"no proof at all").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_client_message_is_answered_without_panicking(msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_client_first(&msg);
            let cred = Credential::from_salted(Mechanism::Sha512, vec![1; 16], &[2; 64], 4096);
            if let Ok(first) = parse_client_first(b"n,,n=u,r=abc") {
                let (ex, _) = ServerExchange::first(first, cred).unwrap();
                let _ = ex.finish(&msg);
            }
        }
    }
}
