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
    }
}
