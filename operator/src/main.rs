//! `stratus-operator`: runs the operator, or prints the CRDs.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use stratus_operator::context::{Context, Settings};
use stratus_operator::leader::{self, Election};
use stratus_operator::metrics::Metrics;
use stratus_operator::{cluster, crd, http, rebalance, topic, user};

/// The Stratus Kubernetes operator.
#[derive(Parser, Debug)]
#[command(name = "stratus-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "STRATUS_OPERATOR_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Broker image for clusters that name none.
    #[arg(
        long,
        env = "STRATUS_OPERATOR_BROKER_IMAGE",
        default_value = "stratus:latest"
    )]
    broker_image: String,
    /// `/livez`, `/readyz` and `/metrics`.
    #[arg(long, env = "STRATUS_OPERATOR_HTTP", default_value = "0.0.0.0:8080")]
    http: String,
    /// Seconds between checks of a cluster with nothing in progress.
    #[arg(long, default_value_t = 60)]
    resync_seconds: u64,
    /// Take the leader Lease before acting (more than one replica).
    #[arg(long, env = "STRATUS_OPERATOR_LEADER_ELECT")]
    leader_elect: bool,
    /// The Lease's namespace (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's name (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "stratus-operator")]
    identity: String,
    /// Create or upgrade the CRDs at startup (needs RBAC on customresourcedefinitions).
    #[arg(long, env = "STRATUS_OPERATOR_APPLY_CRDS")]
    apply_crds: bool,
    /// Logs as JSON lines.
    #[arg(long, env = "STRATUS_OPERATOR_LOG_JSON")]
    log_json: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Prints every CustomResourceDefinition as YAML, or writes one file per CRD to --dir
    /// (the chart's crds/).
    Crds {
        /// Write `<name>.yaml` files here instead of printing.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crds { dir }) = &cli.command {
        match dir {
            Some(dir) => {
                for (name, text) in crd::files()? {
                    std::fs::write(dir.join(&name), text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(&name).display()))?;
                }
            }
            None => print!("{}", crd::yaml()?),
        }
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if cli.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(&cli.http)
        .await
        .map_err(|e| anyhow::anyhow!("--http {}: {e}", cli.http))?;
    tracing::info!(address = %listener.local_addr()?, "serving /livez, /readyz and /metrics");
    tokio::spawn(http::serve(listener, metrics.clone()));
    let client = kube::Client::try_default().await?;
    let election = Election {
        namespace: cli.lease_namespace.clone(),
        name: "stratus-operator".into(),
        identity: cli.identity.clone(),
        duration: Duration::from_secs(15),
    };
    if cli.leader_elect {
        // A standby is ready: it is doing what it should.
        metrics
            .started
            .store(true, std::sync::atomic::Ordering::Relaxed);
        leader::lead(client.clone(), election.clone(), metrics.clone()).await;
    }
    if cli.apply_crds {
        crd::install(&client).await?;
        tracing::info!("CRDs applied");
    }
    let settings = Settings {
        image: cli.broker_image.clone(),
        resync: Duration::from_secs(cli.resync_seconds.max(5)),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        metrics.clone(),
        cli.identity.clone(),
    ));
    metrics
        .started
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(namespace = ?cli.watch_namespace, "reconciling StratusClusters");
    tokio::join!(
        cluster::run(ctx.clone(), cli.watch_namespace.clone()),
        topic::run(ctx.clone(), cli.watch_namespace.clone()),
        user::run(ctx.clone(), cli.watch_namespace.clone()),
        rebalance::run(ctx, cli.watch_namespace)
    );
    if cli.leader_elect {
        leader::release(client, &election).await;
    }
    Ok(())
}
