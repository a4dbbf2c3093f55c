//! `stratus admin top`: a live view of a cluster from its brokers' `/metrics`: throughput
//! per topic, lag per group, cache hit ratio per tier, object-store requests and what
//! they cost per hour at S3 Standard list prices.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use stratus_metrics::text::{parse, Sample};

/// S3 Standard list prices (us-east-1), dollars per 1,000 requests.
const PUT_PER_1000: f64 = 0.005;
const GET_PER_1000: f64 = 0.0004;

/// Options of `stratus admin top`.
#[derive(clap::Args, Debug)]
pub struct Top {
    /// A broker's metrics URL (http.listener); give one per broker.
    #[arg(long = "metrics", default_value = "http://127.0.0.1:9644/metrics")]
    pub urls: Vec<String>,
    /// Seconds between two readings.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Print one view (after one interval) and exit, instead of refreshing the screen.
    #[arg(long)]
    pub once: bool,
}

/// Runs the view until interrupted (or once).
pub async fn run(top: &Top) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let interval = Duration::from_secs_f64(top.interval.max(0.2));
    let mut before = scrape(&http, &top.urls).await?;
    let mut at = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        let now = scrape(&http, &top.urls).await?;
        let view = render(&before, &now, at.elapsed().as_secs_f64());
        if top.once {
            return Ok(view);
        }
        print!("\x1b[2J\x1b[H{view}");
        before = now;
        at = Instant::now();
    }
}

async fn scrape(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<Vec<Sample>> {
    let mut all = Vec::new();
    for url in urls {
        let text = http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?
            .text()
            .await?;
        all.extend(parse(&text));
    }
    Ok(all)
}

/// Sums of `name` by the value of `label` (over every broker).
fn by(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        *out.entry(s.label(label).to_string()).or_insert(0.0) += s.value;
    }
    out
}

/// Per-second rates of `name` by `label` between two readings `secs` apart.
fn rates(a: &[Sample], b: &[Sample], name: &str, label: &str, secs: f64) -> BTreeMap<String, f64> {
    let before = by(a, name, label);
    by(b, name, label)
        .into_iter()
        .map(|(k, v)| {
            let r = (v - before.get(&k).copied().unwrap_or(0.0)).max(0.0) / secs;
            (k, r)
        })
        .collect()
}

/// The view between two readings.
pub fn render(a: &[Sample], b: &[Sample], secs: f64) -> String {
    let secs = secs.max(1e-3);
    let mut o = String::new();
    let bytes_in = rates(a, b, "stratus_topic_bytes_in_total", "topic", secs);
    let bytes_out = rates(a, b, "stratus_topic_bytes_out_total", "topic", secs);
    let msgs_in = rates(a, b, "stratus_topic_messages_in_total", "topic", secs);
    let _ = writeln!(
        o,
        "{:<40} {:>12} {:>12} {:>12}",
        "TOPIC", "IN MB/s", "OUT MB/s", "IN msg/s"
    );
    let mut topics: Vec<&String> = bytes_in.keys().chain(bytes_out.keys()).collect();
    topics.sort();
    topics.dedup();
    for t in topics {
        let get = |m: &BTreeMap<String, f64>| m.get(t).copied().unwrap_or(0.0);
        let _ = writeln!(
            o,
            "{:<40} {:>12.3} {:>12.3} {:>12.1}",
            t,
            get(&bytes_in) / 1e6,
            get(&bytes_out) / 1e6,
            get(&msgs_in)
        );
    }
    let _ = writeln!(o, "\n{:<40} {:>12}", "GROUP", "LAG");
    for (g, lag) in by(b, "stratus_consumergroup_lag", "group") {
        let _ = writeln!(o, "{:<40} {:>12}", g, lag as i64);
    }
    let hits = rates(a, b, "stratus_cache_hits_total", "tier", secs);
    let misses = rates(a, b, "stratus_cache_misses_total", "tier", secs);
    let _ = writeln!(
        o,
        "\n{:<12} {:>10} {:>12}",
        "CACHE TIER", "HIT %", "lookups/s"
    );
    for (tier, h) in &hits {
        let m = misses.get(tier).copied().unwrap_or(0.0);
        let ratio = if h + m > 0.0 {
            format!("{:.1}", 100.0 * h / (h + m))
        } else {
            "-".to_string()
        };
        let _ = writeln!(o, "{:<12} {:>10} {:>12.1}", tier, ratio, h + m);
    }
    let ops = rates(
        a,
        b,
        "stratus_object_store_requests_total",
        "operation",
        secs,
    );
    let errors = rates(a, b, "stratus_object_store_errors_total", "operation", secs);
    let _ = writeln!(
        o,
        "\n{:<12} {:>10} {:>10}",
        "OBJECT OP", "req/s", "errors/s"
    );
    for (op, r) in &ops {
        let e = errors.get(op).copied().unwrap_or(0.0);
        let _ = writeln!(o, "{:<12} {:>10.2} {:>10.2}", op, r, e);
    }
    let op = |k: &str| ops.get(k).copied().unwrap_or(0.0);
    let per_hour = 3600.0
        * ((op("put") + op("list")) * PUT_PER_1000 / 1000.0 + op("get") * GET_PER_1000 / 1000.0);
    let _ = writeln!(
        o,
        "\nobject store requests cost ${per_hour:.4} per hour at S3 Standard list prices \
         (PUT/LIST ${PUT_PER_1000}, GET ${GET_PER_1000} per 1,000)"
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_lag_and_cost() {
        let a = parse(
            "stratus_topic_bytes_in_total{topic=\"t\"} 0\n\
             stratus_object_store_requests_total{operation=\"put\"} 0\n\
             stratus_cache_hits_total{tier=\"memory\"} 0\n\
             stratus_cache_misses_total{tier=\"memory\"} 0\n",
        );
        let b = parse(
            "stratus_topic_bytes_in_total{topic=\"t\"} 4000000\n\
             stratus_object_store_requests_total{operation=\"put\"} 20\n\
             stratus_cache_hits_total{tier=\"memory\"} 3\n\
             stratus_cache_misses_total{tier=\"memory\"} 1\n\
             stratus_consumergroup_lag{group=\"g\",topic=\"t\"} 42\n",
        );
        let view = render(&a, &b, 2.0);
        assert!(
            view.contains("t                                               2.000"),
            "{view}"
        );
        assert!(
            view.contains("g                                                  42"),
            "{view}"
        );
        assert!(view.contains("memory             75.0"), "{view}");
        // 10 PUT/s: 36,000 an hour at $0.005 per 1,000.
        assert!(view.contains("$0.1800 per hour"), "{view}");
    }
}
