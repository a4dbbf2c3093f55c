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
    /// Spreads partitions and coordinator shards evenly over the brokers.
    Rebalance,
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}

/// Runs one admin command against `server` (HOST:PORT of a broker's `admin.listener`).
pub async fn run(server: &str, cmd: AdminCommand) -> anyhow::Result<String> {
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let mut c = AdminClient::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the admin API at {server}: {e}"))?;
    let out = match cmd {
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
        AdminCommand::Rebalance => {
            let r = c
                .rebalance(pb::RebalanceRequest {})
                .await
                .map_err(status)?
                .into_inner();
            format!(
                "rebalanced: {} partitions and {} coordinator shards moved\n",
                r.moved_partitions, r.moved_shards
            )
        }
    };
    Ok(out)
}
