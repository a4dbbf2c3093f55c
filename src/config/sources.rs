//! Where settings come from: a properties file, `STRATUS_` environment variables,
//! `--set` and dedicated flags; each value keeps its origin so that an error names it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, SETTINGS};

/// Where a value was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A line of a properties file.
    File(PathBuf, usize),
    /// An environment variable.
    Env(String),
    /// `--set key=value`.
    Set,
    /// A dedicated flag (`--data-dir`).
    Flag(&'static str),
    /// Given by a program (tests, embedding).
    Given,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "the default"),
            Origin::File(p, line) => write!(f, "{}, line {line}", p.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Set => write!(f, "--set"),
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Given => write!(f, "the settings given"),
        }
    }
}

/// One value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The setting's name.
    pub key: String,
    /// The value, trimmed.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

impl Given {
    /// A value from `origin`.
    pub fn new(key: impl Into<String>, value: impl Into<String>, origin: Origin) -> Self {
        Given {
            key: key.into().trim().to_string(),
            value: value.into().trim().to_string(),
            origin,
        }
    }
}

/// Reads a Java-style properties file: `key=value` lines, `#` and `!` comments.
pub fn read_properties(path: &Path) -> Result<Vec<Given>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::File(path.to_path_buf(), e))?;
    Ok(parse_properties(&text)
        .into_iter()
        .map(|(line, k, v)| Given::new(k, v, Origin::File(path.to_path_buf(), line)))
        .collect())
}

/// Parses properties text into (line number, key, value).
pub fn parse_properties(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|(n, l)| {
            let i = l.find(['=', ':'])?;
            Some((n, l[..i].trim().to_string(), l[i + 1..].trim().to_string()))
        })
        .collect()
}

/// Settings given as `STRATUS_`-prefixed environment variables: `STRATUS_NODE_ID` is
/// `node.id`. Variables that name no setting are ignored (other tools share the prefix).
pub fn env_pairs(vars: impl Iterator<Item = (String, String)>) -> Vec<Given> {
    vars.filter_map(|(k, v)| {
        let rest = k.strip_prefix("STRATUS_")?;
        let name = rest.to_ascii_lowercase().replace('_', ".");
        SETTINGS
            .iter()
            .any(|d| d.name == name)
            .then(|| Given::new(name, v, Origin::Env(k.clone())))
    })
    .collect()
}

/// Text for `stratus --help`: every setting, its default and meaning.
pub fn help_text() -> String {
    let mut s = String::from(
        "Settings (--set key=value, a properties file, or STRATUS_KEY_NAME env vars):\n",
    );
    for d in SETTINGS {
        let derived = d.doc.contains("Default:") || d.doc.contains("defaults to");
        let def = match d.default {
            "" if derived => "(see text)",
            "" => "(none)",
            v => v,
        };
        s.push_str(&format!(
            "  {:<34} default {}\n      {}\n      Takes {}.\n",
            d.name,
            def,
            d.doc,
            d.kind.allowed()
        ));
    }
    s
}
