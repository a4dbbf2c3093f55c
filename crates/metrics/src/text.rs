//! The Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use crate::{FamilySnapshot, Kind, Value};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes the families in the Prometheus text format.
pub fn render(families: &[FamilySnapshot]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    for f in families {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for s in &f.series {
            let labels: Vec<(&str, &str)> = f
                .label_names
                .iter()
                .copied()
                .zip(s.labels.iter().map(|v| &**v))
                .collect();
            match &s.value {
                Value::Counter(n) => {
                    sample(&mut out, f.name, "", &labels, None);
                    let _ = writeln!(out, " {n}");
                }
                Value::Gauge(v) | Value::CounterFloat(v) => {
                    sample(&mut out, f.name, "", &labels, None);
                    let _ = writeln!(out, " {}", number(*v));
                }
                Value::Histogram {
                    bounds,
                    counts,
                    sum,
                } => {
                    let mut cumulative = 0u64;
                    for (i, c) in counts.iter().enumerate() {
                        cumulative += c;
                        let le = bounds.get(i).map_or("+Inf".to_string(), |b| number(*b));
                        sample(&mut out, f.name, "_bucket", &labels, Some(&le));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    sample(&mut out, f.name, "_sum", &labels, None);
                    let _ = writeln!(out, " {}", number(*sum));
                    sample(&mut out, f.name, "_count", &labels, None);
                    let _ = writeln!(out, " {cumulative}");
                }
            }
        }
    }
    out
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &[(&str, &str)], le: Option<&str>) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus writes it.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// One sample read back from the text format: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`_bucket`, `_sum`, `_count` included).
    pub name: String,
    /// Label names and values, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or "".
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Reads the samples of a Prometheus text exposition (comments and malformed lines are
/// skipped: it reads what brokers serve, for `stratus admin top`).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name_end, has_labels) = match line.find(['{', ' ']) {
        Some(i) => (i, line.as_bytes()[i] == b'{'),
        None => return None,
    };
    let name = line[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if has_labels {
        let mut chars = rest[1..].char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 2);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    // A quoted value with \\, \" and \n escapes.
                    if !matches!(chars.next(), Some((_, '"'))) {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()? {
                            (_, '\\') => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            (_, '"') => break,
                            (_, c) => value.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                c => key.push(c),
            }
        }
        rest = &rest[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    #[test]
    fn renders_each_kind() {
        let r = Registry::default();
        r.counters("req_total", "Requests.", &["request"])
            .get(&["Produce"])
            .add(7);
        r.gauges("conns", "Open\nconnections.", &["listener"])
            .get(&["a\"b\\c"])
            .set(1.5);
        let h = r.histogram("lat_seconds", "Latency.", &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(2.0);
        let text = render(&r.gather());
        let expected = "\
# HELP conns Open\\nconnections.
# TYPE conns gauge
conns{listener=\"a\\\"b\\\\c\"} 1.5
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{le=\"0.1\"} 1
lat_seconds_bucket{le=\"1\"} 1
lat_seconds_bucket{le=\"+Inf\"} 2
lat_seconds_sum 2.05
lat_seconds_count 2
# HELP req_total Requests.
# TYPE req_total counter
req_total{request=\"Produce\"} 7
";
        assert_eq!(text, expected);
        let back = parse(&text);
        assert_eq!(back[0].name, "conns");
        assert_eq!(back[0].label("listener"), "a\"b\\c");
        assert_eq!(back[0].value, 1.5);
        let inf = back.iter().find(|s| s.label("le") == "+Inf").unwrap();
        assert_eq!((inf.name.as_str(), inf.value), ("lat_seconds_bucket", 2.0));
        assert_eq!(back.last().unwrap().label("request"), "Produce");
        assert_eq!(back.len(), 7);
    }
}
