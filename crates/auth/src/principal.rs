//! Principals from TLS client certificates: the subject's distinguished name in RFC 2253
//! form (as Java's `X500Principal.getName()` writes it, which Kafka's rules are written
//! against), mapped by `ssl.principal.mapping.rules`.

use regex::Regex;
use x509_parser::prelude::{FromDer, X509Certificate};

/// `ssl.principal.mapping.rules`: `DEFAULT` and `RULE:pattern/replacement/[LU]`, in order;
/// the first rule whose pattern matches the whole name gives the principal.
#[derive(Debug, Clone)]
pub struct MappingRules(Vec<Rule>);

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Map {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

impl MappingRules {
    /// Parses the setting's value as Kafka does: rules separated by commas or newlines
    /// (a rule's pattern may itself hold commas).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = take_part(after).ok_or("a RULE without /replacement/")?;
                let (replacement, after) =
                    take_part(after).ok_or("a RULE without its closing '/'")?;
                let (case, after) = match after.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                    _ => (None, after),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("invalid pattern {pattern}: {e}"))?;
                rules.push(Rule::Map {
                    pattern,
                    replacement: java_replacement(&replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(format!(
                    "'{rest}' is neither DEFAULT nor RULE:pattern/replacement/"
                ));
            }
            rest = rest.trim_start();
            match rest.chars().next() {
                None => {}
                Some(',' | '\n') => rest = rest[1..].trim_start(),
                Some(_) => return Err(format!("unexpected '{rest}' after a rule")),
            }
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(MappingRules(rules))
    }

    /// The principal name for a distinguished name; an error when no rule applies.
    pub fn apply(&self, dn: &str) -> Result<String, String> {
        for rule in &self.0 {
            match rule {
                Rule::Default => return Ok(dn.to_string()),
                Rule::Map {
                    pattern,
                    replacement,
                    case,
                } => {
                    if pattern.is_match(dn) {
                        let out = pattern.replace(dn, replacement.as_str()).into_owned();
                        return Ok(match case {
                            Some('L') => out.to_lowercase(),
                            Some('U') => out.to_uppercase(),
                            _ => out,
                        });
                    }
                }
            }
        }
        Err(format!(
            "no ssl.principal.mapping.rules rule applies to {dn}"
        ))
    }
}

/// One `/`-terminated part of a rule; `\/` and other escapes are kept for the regex.
fn take_part(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, n) = chars.next()?;
                if n != '/' {
                    out.push('\\');
                }
                out.push(n);
            }
            '/' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// Java's `$1` is the regex crate's `${1}` (which would otherwise read `$1a` as a name).
fn java_replacement(r: &str) -> String {
    let mut out = String::new();
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            let mut n = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                n.push(d);
                chars.next();
            }
            out.push_str(&format!("${{{n}}}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The subject of a DER certificate as an RFC 2253 name (`CN=alice,OU=eng,O=Acme,C=US`).
pub fn subject_dn(der: &[u8]) -> Result<String, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let oid = a.attr_type().to_id_string();
                let name = short_name(&oid).map(str::to_string).unwrap_or(oid);
                let value = a.as_str().map(escape).unwrap_or_else(|_| {
                    let hex: String = a
                        .attr_value()
                        .data
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    format!("#{hex}")
                });
                format!("{name}={value}")
            })
            .collect();
        rdns.push(attrs.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keeps_the_whole_name() {
        let r = MappingRules::parse("DEFAULT").unwrap();
        assert_eq!(r.apply("CN=alice,OU=eng").unwrap(), "CN=alice,OU=eng");
    }

    #[test]
    fn kafkas_documented_rules_map_as_kafka_maps_them() {
        // From Kafka's documentation of ssl.principal.mapping.rules.
        let r = MappingRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT",
        )
        .unwrap();
        assert_eq!(
            r.apply("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .unwrap(),
            "serviceuser"
        );
        assert_eq!(
            r.apply("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .unwrap(),
            "adminuser@admin"
        );
        assert_eq!(r.apply("OU=x,cn=Some.Host").unwrap(), "some.host");
        assert_eq!(r.apply("O=nobody").unwrap(), "O=nobody");
    }

    #[test]
    fn no_matching_rule_is_an_error_and_bad_rules_are_refused() {
        let r = MappingRules::parse("RULE:^CN=(.*)$/$1/U").unwrap();
        assert_eq!(r.apply("CN=bob").unwrap(), "BOB");
        assert!(r.apply("O=bob").is_err());
        for bad in ["RULE:x", "RULE:(/x/", "NOPE", "DEFAULT junk"] {
            assert!(MappingRules::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("plain"), "plain");
    }
}
