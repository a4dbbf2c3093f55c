//! The process's CPU time, memory and open files, read from `/proc` at scrape time with
//! Prometheus's standard names (`process_cpu_seconds_total`…).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use stratus_metrics::{FamilySnapshot, Kind, Registry, Value};

/// Clock ticks per second of `/proc/self/stat`'s times (USER_HZ: 100 on Linux).
const TICKS: f64 = 100.0;

pub(super) fn register(registry: &Registry) {
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    registry.collector(move |out| {
        let gauge = |name, help, v: f64| {
            let mut f = FamilySnapshot::new(name, help, Kind::Gauge, &[]);
            f.push(vec![], Value::Gauge(v));
            f
        };
        out.push(gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            start,
        ));
        let version = Arc::from(env!("CARGO_PKG_VERSION"));
        let mut info = FamilySnapshot::new(
            "stratus_build_info",
            "The running version (always 1).",
            Kind::Gauge,
            &["version"],
        );
        info.push(vec![version], Value::Gauge(1.0));
        out.push(info);
        if let Some(cpu) = cpu_seconds() {
            let mut f = FamilySnapshot::new(
                "process_cpu_seconds_total",
                "User and system CPU time spent, in seconds.",
                Kind::Counter,
                &[],
            );
            f.push(vec![], Value::CounterFloat(cpu));
            out.push(f);
        }
        if let Some(rss) = status_kb("VmRSS:") {
            out.push(gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss * 1024.0,
            ));
        }
        if let Some(vm) = status_kb("VmSize:") {
            out.push(gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                vm * 1024.0,
            ));
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            out.push(gauge(
                "process_open_fds",
                "Open file descriptors (sockets included).",
                fds.count() as f64,
            ));
        }
        if let Some(max) = max_fds() {
            out.push(gauge(
                "process_max_fds",
                "Most open file descriptors allowed.",
                max,
            ));
        }
    });
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields are counted after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

fn status_kb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let r = Registry::default();
        register(&r);
        let g = r.gather();
        let names: Vec<&str> = g.iter().map(|f| f.name).collect();
        for n in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_resident_memory_bytes",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        let rss = g
            .iter()
            .find(|f| f.name == "process_resident_memory_bytes")
            .unwrap();
        assert!(matches!(rss.series[0].value, Value::Gauge(v) if v > 1e6));
    }
}
