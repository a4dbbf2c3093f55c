//! `stratus admin …`: drives the admin API of any broker and prints readable answers.

use clap::Subcommand;

use pb::admin_client::AdminClient;
use stratus_proto as pb;

/// Admin commands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Brokers, the controller, and how work is spread.
    Status,
    /// Owner and leader epoch of every partition (or of one topic).
    Partitions {
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Moves everything off a broker and keeps it empty (before removing it).
    Drain {
        /// The broker.
        node: i32,
        /// Return at once instead of waiting until the broker owns nothing.
        #[arg(long)]
        no_wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u32,
    },
    /// Lets a drained broker take work again.
    Undrain {
        /// The broker.
        node: i32,
    },
    /// Moves one partition to a broker.
    Move {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Target broker.
        to: i32,
    },
    /// Spreads partitions and coordinator shards over the brokers: by measured bytes per
    /// second when the brokers have reported traffic, else by count.
    Rebalance {
        /// Print what would move and each broker's load before and after; move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// A live view from the brokers' /metrics: throughput per topic, lag per group, cache
    /// hit ratio, object-store requests and their cost per hour.
    Top(crate::telemetry::top::Top),
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}

/// How to reach the admin API: its address, and the TLS files and token it asks for.
#[derive(clap::Args, Debug, Default)]
pub struct Connect {
    /// HOST:PORT of any broker's admin listener.
    #[arg(long, default_value = "127.0.0.1:9645", env = "STRATUS_ADMIN")]
    pub server: String,
    /// CA certificate(s) (PEM) of the admin API's TLS certificate: connect with TLS.
    #[arg(long, env = "STRATUS_ADMIN_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for an admin API that asks for one.
    #[arg(long, env = "STRATUS_ADMIN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, env = "STRATUS_ADMIN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Name the admin API's certificate must carry (default: the host of --server).
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// File holding the admin API's bearer token.
    #[arg(long, env = "STRATUS_ADMIN_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

impl Connect {
    async fn client(
        &self,
    ) -> anyhow::Result<
        AdminClient<
            tonic::service::interceptor::InterceptedService<
                tonic::transport::Channel,
                impl tonic::service::Interceptor,
            >,
        >,
    > {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let server = &self.server;
        let read = |what: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("{what} {}: {e}", p.display()))
        };
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let url = if server.contains("://") {
            server.clone()
        } else {
            format!("{scheme}://{server}")
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| anyhow::anyhow!("--server {server}: {e}"))?;
        if let Some(ca) = &self.tls_ca {
            let host = server
                .rsplit_once(':')
                .map_or(server.as_str(), |(h, _)| h)
                .trim_start_matches("https://")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?))
                .domain_name(self.tls_server_name.clone().unwrap_or(host));
            if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                tls = tls.identity(Identity::from_pem(
                    read("--tls-cert", cert)?,
                    read("--tls-key", key)?,
                ));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| anyhow::anyhow!("TLS for {server}: {e}"))?;
        }
        if self.tls_ca.is_none() && (self.tls_cert.is_some() || self.token_file.is_some()) {
            let host = server.rsplit_once(':').map_or(server.as_str(), |(h, _)| h);
            let host = host
                .trim_start_matches("http://")
                .trim_start_matches('[')
                .trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if self.tls_cert.is_some() {
                anyhow::bail!(
                    "--tls-cert needs --tls-ca (the admin API's CA): without it there is no TLS"
                );
            }
            if !loopback {
                anyhow::bail!(
                    "--token-file without --tls-ca would send the token in clear text to {server}; \
                     give the admin API's CA with --tls-ca"
                );
            }
        }
        let token = match &self.token_file {
            Some(p) => {
                let t = String::from_utf8(read("--token-file", p)?)
                    .map_err(|_| anyhow::anyhow!("--token-file {}: not text", p.display()))?;
                let value = format!("Bearer {}", t.trim());
                Some(
                    tonic::metadata::MetadataValue::try_from(value.as_str()).map_err(|_| {
                        anyhow::anyhow!("--token-file {}: not a token", p.display())
                    })?,
                )
            }
            None => None,
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the admin API at {server}: {e:?}"))?;
        Ok(AdminClient::with_interceptor(
            channel,
            move |mut req: tonic::Request<()>| {
                if let Some(t) = &token {
                    req.metadata_mut().insert("authorization", t.clone());
                }
                Ok(req)
            },
        ))
    }
}

/// Runs one admin command against the admin API `connect` names.
pub async fn run(connect: &Connect, cmd: AdminCommand) -> anyhow::Result<String> {
    if let AdminCommand::Top(top) = &cmd {
        // Reads the brokers' /metrics, not the admin API.
        return crate::telemetry::top::run(top).await;
    }
    let mut c = connect.client().await?;
    let out = match cmd {
        AdminCommand::Top(top) => crate::telemetry::top::run(&top).await?,
        AdminCommand::Status => {
            let s = c
                .cluster_status(pb::ClusterStatusRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut o = format!(
                "cluster {}  controller {}  topics {}  partitions {} ({} without owner)  coordinator shards {}\n\n",
                s.cluster_id, s.controller_id, s.topics, s.partitions, s.unassigned_partitions, s.coordinator_shards
            );
            o.push_str(&format!(
                "{:>5}  {:<6}  {:<8}  {:>10}  {:>6}  {:<21}  {}\n",
                "NODE", "STATE", "RACK", "PARTITIONS", "SHARDS", "ADMIN", "LISTENERS"
            ));
            for b in s.brokers {
                let state = match (b.alive, b.draining) {
                    (false, _) => "gone",
                    (true, true) => "drain",
                    (true, false) => "up",
                };
                o.push_str(&format!(
                    "{:>5}  {:<6}  {:<8}  {:>10}  {:>6}  {:<21}  {}\n",
                    b.node_id,
                    state,
                    if b.rack.is_empty() { "-" } else { &b.rack },
                    b.partitions,
                    b.coordinator_shards,
                    if b.admin_address.is_empty() {
                        "-"
                    } else {
                        &b.admin_address
                    },
                    b.listeners.join(",")
                ));
            }
            o
        }
        AdminCommand::Partitions { topic } => {
            let r = c
                .list_partitions(pb::ListPartitionsRequest {
                    topic: topic.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut o = format!(
                "{:<40}  {:>9}  {:>5}  {:>5}\n",
                "TOPIC", "PARTITION", "OWNER", "EPOCH"
            );
            for p in r.partitions {
                let owner = if p.owner < 0 {
                    "-".to_string()
                } else {
                    p.owner.to_string()
                };
                o.push_str(&format!(
                    "{:<40}  {:>9}  {:>5}  {:>5}\n",
                    p.topic, p.partition, owner, p.leader_epoch
                ));
            }
            o
        }
        AdminCommand::Drain {
            node,
            no_wait,
            timeout,
        } => {
            let r = c
                .drain_broker(pb::DrainBrokerRequest {
                    node_id: node,
                    wait: !no_wait,
                    timeout_ms: timeout.saturating_mul(1000),
                })
                .await
                .map_err(status)?
                .into_inner();
            if r.remaining_partitions == 0 && r.remaining_shards == 0 {
                format!("broker {node} drained: it owns nothing\n")
            } else {
                format!(
                    "broker {node} draining: {} partitions and {} coordinator shards still on it\n",
                    r.remaining_partitions, r.remaining_shards
                )
            }
        }
        AdminCommand::Undrain { node } => {
            c.undrain_broker(pb::UndrainBrokerRequest { node_id: node })
                .await
                .map_err(status)?;
            format!("broker {node} takes work again (the controller gives it a share now)\n")
        }
        AdminCommand::Move {
            topic,
            partition,
            to,
        } => {
            let r = c
                .move_partition(pb::MovePartitionRequest {
                    topic: topic.clone(),
                    partition,
                    to_node_id: to,
                })
                .await
                .map_err(status)?
                .into_inner();
            format!(
                "{topic}-{partition} now owned by broker {to} at leader epoch {}\n",
                r.leader_epoch
            )
        }
        AdminCommand::Rebalance { dry_run } => {
            let r = c
                .rebalance(pb::RebalanceRequest { dry_run })
                .await
                .map_err(status)?
                .into_inner();
            if !dry_run {
                return Ok(format!(
                    "rebalanced: {} partitions and {} coordinator shards moved\n",
                    r.moved_partitions, r.moved_shards
                ));
            }
            let mut out = format!(
                "would move {} partitions and {} coordinator shards\n\
                 {:>6} {:>10} {:>10} {:>14} {:>14}\n",
                r.moved_partitions,
                r.moved_shards,
                "broker",
                "parts now",
                "parts then",
                "bytes/s now",
                "bytes/s then"
            );
            for l in &r.load {
                out.push_str(&format!(
                    "{:>6} {:>10} {:>10} {:>14} {:>14}\n",
                    l.node_id,
                    l.partitions_before,
                    l.partitions_after,
                    l.bytes_per_sec_before,
                    l.bytes_per_sec_after
                ));
            }
            out
        }
    };
    Ok(out)
}
