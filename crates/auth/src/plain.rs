//! SASL PLAIN (RFC 4616): `authzid NUL user NUL password`, checked against a table of
//! users and passwords (from a JAAS line or a credentials file).

use std::collections::BTreeMap;

use crate::scram::constant_time_eq;
use crate::AuthError;

/// Users and their passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PlainUsers(BTreeMap<String, String>);

impl std::fmt::Debug for PlainUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the passwords.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl PlainUsers {
    /// A table of `(user, password)`.
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Self {
        PlainUsers(users.into_iter().collect())
    }

    /// The users and passwords.
    pub fn into_pairs(self) -> impl Iterator<Item = (String, String)> {
        self.0.into_iter()
    }

    /// Whether no user is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads a credentials file: one `user=password` per line; blank lines and lines
    /// starting with `#` are skipped.
    pub fn parse_file(text: &str) -> Result<Self, String> {
        let mut users = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, password) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected user=password", n + 1))?;
            users.insert(user.trim().to_string(), password.trim().to_string());
        }
        Ok(PlainUsers(users))
    }

    /// Checks a PLAIN token; the user it authenticates.
    pub fn authenticate(&self, token: &[u8]) -> Result<String, AuthError> {
        let mut parts = token.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid(
                "Invalid SASL/PLAIN response: expected 3 tokens".into(),
            ));
        };
        let (Ok(authzid), Ok(user)) = (std::str::from_utf8(authzid), std::str::from_utf8(user))
        else {
            return Err(AuthError::Invalid(
                "Invalid SASL/PLAIN response: not UTF-8".into(),
            ));
        };
        if user.is_empty() {
            return Err(AuthError::Invalid(
                "Authentication failed: username not specified".into(),
            ));
        }
        if password.is_empty() {
            return Err(AuthError::Invalid(
                "Authentication failed: password not specified".into(),
            ));
        }
        if !authzid.is_empty() && authzid != user {
            return Err(AuthError::Failed(
                "Authentication failed: Client requested an authorization id that is different from username".into(),
            ));
        }
        // The comparison runs whether or not the user exists.
        let expected = self.0.get(user);
        let ok = constant_time_eq(
            expected.map(String::as_bytes).unwrap_or(b"\0no such user"),
            password,
        );
        if ok && expected.is_some() {
            Ok(user.to_string())
        } else {
            Err(AuthError::Failed(
                "Authentication failed: Invalid username or password".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> PlainUsers {
        PlainUsers::new([("alice".to_string(), "alice-secret".to_string())])
    }

    #[test]
    fn a_user_with_the_right_password_is_authenticated() {
        assert_eq!(
            users().authenticate(b"\0alice\0alice-secret").unwrap(),
            "alice"
        );
        assert_eq!(
            users().authenticate(b"alice\0alice\0alice-secret").unwrap(),
            "alice"
        );
    }

    #[test]
    fn wrong_passwords_unknown_users_and_other_authzids_are_refused() {
        for token in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0alice-secret",
            b"bob\0alice\0alice-secret",
            b"\0\0x",
            b"alice-secret",
            b"\0alice\0alice-secret\0extra",
            b"\0alice\0",
        ] {
            assert!(users().authenticate(token).is_err(), "{token:?}");
        }
    }

    #[test]
    fn a_credentials_file_is_user_equals_password_per_line() {
        let u = PlainUsers::parse_file("# users\nalice = alice-secret\n\nbob=b=b\n").unwrap();
        assert_eq!(u.authenticate(b"\0bob\0b=b").unwrap(), "bob");
        assert!(PlainUsers::parse_file("no equals sign").is_err());
        assert_eq!(
            format!("{u:?}"),
            r#"{"alice", "bob"}"#,
            "Debug never shows passwords"
        );
    }
}
