//! What values a setting or a topic config accepts, checked before anything starts.

/// The kind of value a setting or topic config takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A 64-bit whole number in `min..=max`.
    Long(i64, i64),
    /// A 32-bit whole number in `min..=max`.
    Int(i64, i64),
    /// `true` or `false`.
    Bool,
    /// One of the words.
    Choice(&'static [&'static str]),
    /// A ratio in 0..=1.
    Ratio,
    /// Any text.
    Text,
    /// Any text that is a secret (a password, a key, a JAAS line): never shown, and
    /// reported as sensitive.
    Password,
    /// Comma-separated `NAME://HOST:PORT` listeners (empty allowed if `true`).
    Listeners(bool),
    /// A URL with one of these schemes (empty allowed if `true`). A scheme ending in `//`
    /// needs something after it (`file://` a path, `s3://` a bucket), one ending in `:`
    /// does not (`memory:`), and a bare word (`embedded`) is accepted as is.
    Url(&'static [&'static str], bool),
    /// `HOST:PORT`, or empty.
    Address,
}

impl Kind {
    /// Whether values of this kind are secrets.
    pub fn sensitive(&self) -> bool {
        matches!(self, Kind::Password)
    }
}

/// The longest `Long`.
pub const LONG: i64 = i64::MAX;
/// The longest `Int`.
pub const INT: i64 = i32::MAX as i64;

impl Kind {
    /// Checks a value; the error says what is allowed.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let ok = match *self {
            Kind::Long(min, max) | Kind::Int(min, max) => {
                value.parse::<i64>().is_ok_and(|v| (min..=max).contains(&v))
            }
            Kind::Bool => matches!(value.to_ascii_lowercase().as_str(), "true" | "false"),
            Kind::Choice(words) => words.contains(&value),
            Kind::Ratio => value.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v)),
            Kind::Text | Kind::Password => true,
            Kind::Listeners(empty) => {
                return if value.trim().is_empty() && empty {
                    Ok(())
                } else {
                    super::parse_listeners("", value)
                        .map(|_| ())
                        .map_err(|_| self.allowed())
                };
            }
            Kind::Url(schemes, empty) => {
                (value.is_empty() && empty)
                    || schemes.iter().any(|s| {
                        if s.ends_with("//") {
                            value.len() > s.len() && value.starts_with(s)
                        } else if s.ends_with(':') {
                            value.starts_with(s)
                        } else {
                            value == *s
                        }
                    })
            }
            Kind::Address => value.is_empty() || valid_address(value),
        };
        if ok {
            Ok(())
        } else {
            Err(self.allowed())
        }
    }

    /// What the kind allows, in words.
    pub fn allowed(&self) -> String {
        match *self {
            Kind::Long(min, LONG) => format!("a whole number of at least {min}"),
            // Said outright: "at least 14" read as a contradiction when 10737418240 was
            // refused for log.segment.bytes (an int in Kafka too).
            Kind::Int(min, INT) => {
                format!("a whole number from {min} to {INT} (a 32-bit integer)")
            }
            Kind::Long(min, max) | Kind::Int(min, max) => {
                format!("a whole number from {min} to {max}")
            }
            Kind::Bool => "true or false".into(),
            Kind::Choice(words) => format!("one of {}", words.join(", ")),
            Kind::Ratio => "a number from 0 to 1".into(),
            Kind::Text => "any text".into(),
            Kind::Password => "any text (kept secret)".into(),
            Kind::Listeners(_) => {
                "comma-separated NAME://HOST:PORT listeners, e.g. PLAINTEXT://0.0.0.0:9092".into()
            }
            Kind::Url(schemes, _) => format!(
                "a URL starting with {}",
                schemes
                    .iter()
                    .map(|s| if s.ends_with("://") {
                        format!("{s}…")
                    } else {
                        s.to_string()
                    })
                    .collect::<Vec<_>>()
                    .join(", or ")
            ),
            Kind::Address => "HOST:PORT, e.g. 127.0.0.1:9644, or empty".into(),
        }
    }
}

fn valid_address(v: &str) -> bool {
    v.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_accept_what_they_say_and_nothing_else() {
        let long = Kind::Long(-1, LONG);
        assert!(long.check("-1").is_ok() && long.check("604800000").is_ok());
        for bad in ["abc", "", "-2", "1.5", "9223372036854775808"] {
            assert_eq!(
                long.check(bad),
                Err("a whole number of at least -1".into()),
                "{bad}"
            );
        }
        let int = Kind::Int(1, 100);
        assert!(int.check("100").is_ok());
        assert_eq!(int.check("101"), Err("a whole number from 1 to 100".into()));
        // An int setting names its upper bound: 10737418240 is not "less than 14".
        let segment_bytes = Kind::Int(14, INT);
        assert!(segment_bytes.check("2147483647").is_ok());
        assert_eq!(
            segment_bytes.check("10737418240"),
            Err("a whole number from 14 to 2147483647 (a 32-bit integer)".into())
        );
        assert!(Kind::Bool.check("TRUE").is_ok() && Kind::Bool.check("yes").is_err());
        let url = Kind::Url(&["embedded", "etcd://"], false);
        assert!(url.check("embedded").is_ok() && url.check("etcd://h:2379").is_ok());
        assert!(url.check("etcd://").is_err() && url.check("").is_err());
        assert_eq!(
            url.check("http://x").unwrap_err(),
            "a URL starting with embedded, or etcd://…"
        );
        assert!(Kind::Listeners(false).check("PLAINTEXT://:9092").is_ok());
        assert!(Kind::Listeners(false).check("9092").is_err());
        assert!(Kind::Listeners(true).check("").is_ok());
        assert!(
            Kind::Address.check("127.0.0.1:9644").is_ok() && Kind::Address.check("9644").is_err()
        );
    }
}
