//! Connections per client address: `max.connections.per.ip`, with exceptions in
//! `max.connections.per.ip.overrides` (`host:count,…`, as Kafka writes it). A connection over
//! the limit is closed as soon as it is accepted, with one log line, as Kafka does.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

/// The counts and their limits, shared by every listener.
pub struct ConnectionLimits {
    per_ip: usize,
    overrides: HashMap<IpAddr, usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// An admitted connection; its address's count goes down when it is dropped.
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// From the settings; the error names the override that cannot be read. Host names in
    /// the overrides are resolved once, here.
    pub fn new(per_ip: usize, overrides: &str) -> Result<Self, String> {
        let mut map = HashMap::new();
        for entry in overrides
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let bad = || format!("max.connections.per.ip.overrides: '{entry}' is not host:count");
            let (host, count) = entry.rsplit_once(':').ok_or_else(bad)?;
            let count: usize = count.trim().parse().map_err(|_| bad())?;
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => (host, 0)
                    .to_socket_addrs()
                    .map_err(|e| format!("max.connections.per.ip.overrides: {host}: {e}"))?
                    .map(|a| a.ip())
                    .collect(),
            };
            for ip in ips {
                map.insert(ip, count);
            }
        }
        Ok(ConnectionLimits {
            per_ip,
            overrides: map,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `ip`, or says no (the limit for `ip`).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, usize> {
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.per_ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                open.remove(&ip);
            }
            return Err(limit);
        }
        *n += 1;
        Ok(Admitted {
            limits: self.clone(),
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_limit_and_closed_connections_free_their_place() {
        let limits = Arc::new(ConnectionLimits::new(2, "127.0.0.2:0, [::1]:3").unwrap());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(2));
        drop(first);
        assert!(
            limits.admit(a).is_ok(),
            "a closed connection frees its place"
        );
        assert_eq!(limits.admit("127.0.0.2".parse().unwrap()).err(), Some(0));
        let v6: IpAddr = "::1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| limits.admit(v6).unwrap()).collect();
        assert_eq!(limits.admit(v6).err(), Some(3));
        drop(held);
        assert!(limits.open.lock().unwrap().get(&v6).is_none());
    }

    #[test]
    fn an_unreadable_override_is_refused_with_the_setting_named() {
        for bad in ["127.0.0.1", "127.0.0.1:many", ":5x"] {
            let e = ConnectionLimits::new(1, bad).err().unwrap();
            assert!(e.contains("max.connections.per.ip.overrides"), "{e}");
        }
        assert!(ConnectionLimits::new(1, "localhost:5").is_ok());
    }
}
