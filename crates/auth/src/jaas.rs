//! JAAS configuration lines as Kafka brokers take them in `sasl.jaas.config`:
//! `<LoginModule class> <flag> key="value" ...;`. Only the options matter here (PLAIN's
//! `user_<name>="<password>"`); the module class says which mechanism it is for.

use std::collections::BTreeMap;

/// One parsed JAAS line.
#[derive(Clone, PartialEq, Eq)]
pub struct Jaas {
    /// The login module class (`org.apache.kafka.common.security.plain.PlainLoginModule`).
    pub module: String,
    /// Its options.
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for Jaas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options hold passwords: only their names.
        f.debug_struct("Jaas")
            .field("module", &self.module)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Jaas {
    /// Parses `Module flag k=v k="v" ...;`. The error says what is wrong, never a value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let text = text.strip_suffix(';').unwrap_or(text).trim();
        let mut rest = text;
        let module = take_word(&mut rest).ok_or("no login module class")?;
        let flag = take_word(&mut rest).ok_or("no control flag (required)")?;
        if !["required", "requisite", "sufficient", "optional"].contains(&flag.as_str()) {
            return Err(format!(
                "control flag '{flag}' is not required, requisite, sufficient or optional"
            ));
        }
        let mut options = BTreeMap::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let eq = rest.find('=').ok_or("an option without '='")?;
            let key = rest[..eq].trim().to_string();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err("an option with no name".into());
            }
            rest = rest[eq + 1..].trim_start();
            let value = if let Some(quoted) = rest.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let end = end.ok_or_else(|| format!("the value of {key} has no closing quote"))?;
                rest = &quoted[end + 1..];
                value
            } else {
                take_word(&mut rest).unwrap_or_default()
            };
            options.insert(key, value);
        }
        Ok(Jaas {
            module: module.to_string(),
            options,
        })
    }

    /// PLAIN users: the `user_<name>="<password>"` options.
    pub fn plain_users(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.options
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("user_")?.to_string(), v.clone())))
    }
}

fn take_word(rest: &mut &str) -> Option<String> {
    let s = rest.trim_start();
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let word = s[..end].to_string();
    *rest = &s[end..];
    Some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_plain_line_gives_its_users() {
        let j = Jaas::parse(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required
               username="admin" password="admin-secret"
               user_admin="admin-secret" user_alice="al\"ice secret";"#,
        )
        .unwrap();
        assert_eq!(
            j.module,
            "org.apache.kafka.common.security.plain.PlainLoginModule"
        );
        let users: Vec<_> = j.plain_users().collect();
        assert_eq!(
            users,
            vec![
                ("admin".into(), "admin-secret".into()),
                ("alice".into(), "al\"ice secret".into())
            ]
        );
        assert!(
            !format!("{j:?}").contains("secret"),
            "Debug never shows values"
        );
    }

    #[test]
    fn broken_lines_are_refused_with_a_reason() {
        for line in [
            "",
            "Module",
            "Module maybe;",
            r#"Module required user_a="open"#,
            "Module required =x;",
        ] {
            assert!(Jaas::parse(line).is_err(), "{line}");
        }
        assert!(Jaas::parse("Module required;").unwrap().options.is_empty());
        assert_eq!(
            Jaas::parse("Module required a=b;").unwrap().options["a"],
            "b"
        );
    }
}
