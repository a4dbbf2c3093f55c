//! The `stratus` binary.

use clap::Parser;

// glibc's malloc kept about a gigabyte of freed buffers (sealing, large fetches) resident
// under load; mimalloc returns them 100 ms after they are freed (its `purge_delay`, which
// `MIMALLOC_PURGE_DELAY` sets, [`default_purge_delay`]: shorter lowers the peak RSS but
// costs throughput, see docs/design.md, "Memory"). Built without transparent huge pages
// ("no_thp"): with them the kernel zeroed a whole 2 MiB page for each one mimalloc
// touched after returning part of it, a third of the broker's CPU at full produce load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

use stratus::config::{self, Given, Origin, Settings};

/// A Kafka-compatible broker whose log lives in object storage.
#[derive(Parser, Debug)]
#[command(name = "stratus", version, after_help = config::help_text())]
struct Cli {
    /// A properties file with settings (Kafka's server.properties names).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Directory for metadata, the local object store and the cache (data.dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Listeners, comma-separated: PLAINTEXT://HOST:PORT (listeners).
    #[arg(long, value_name = "LIST")]
    listeners: Option<String>,
    /// Any setting, key=value; repeatable. Wins over the file and the environment.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Administers a running cluster through a broker's admin API (admin.listener).
    Admin {
        #[command(flatten)]
        connect: stratus::cluster::cli::Connect,
        #[command(subcommand)]
        command: stratus::cluster::cli::AdminCommand,
    },
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut given = Vec::new();
    if let Some(f) = &cli.config {
        given.extend(config::read_properties(f)?);
    }
    given.extend(config::env_pairs(std::env::vars()));
    for s in &cli.set {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set expects key=value, got '{s}'"))?;
        given.push(Given::new(k, v, Origin::Set));
    }
    if let Some(d) = &cli.data_dir {
        given.push(Given::new("data.dir", d, Origin::Flag("--data-dir")));
    }
    if let Some(l) = &cli.listeners {
        given.push(Given::new("listeners", l, Origin::Flag("--listeners")));
    }
    Ok(Settings::load(given)?)
}

/// mimalloc's purge delay, in milliseconds, unless `MIMALLOC_PURGE_DELAY` is set.
const PURGE_DELAY_MS: &str = "100";

/// Runs the broker again in this process (`exec`) with `MIMALLOC_PURGE_DELAY` set to
/// [`PURGE_DELAY_MS`] if the environment does not set it. mimalloc reads its options from
/// the environment when the process starts, before `main`, and safe Rust cannot set them
/// later; its own default (a second) held 10-25 % more memory at the same throughput
/// (docs/design.md, "Memory"). Returns only if the variable is set or `exec` failed.
fn default_purge_delay() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        again.arg0(arg0);
    }
    let e = again
        .args(args)
        .env("MIMALLOC_PURGE_DELAY", PURGE_DELAY_MS)
        .exec();
    eprintln!("stratus: running with mimalloc's default purge delay: re-exec failed: {e}");
}

fn main() {
    default_purge_delay();
    let mut cli = Cli::parse();
    if let Some(Command::Admin { connect, command }) = cli.command.take() {
        std::process::exit(admin(&connect, command));
    }
    let settings = match settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stratus: {e}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if settings.telemetry.log_format == "json" {
        // One JSON object per line: timestamp, level, target, message and fields.
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    abort_on_panic();
    for note in &settings.notes {
        tracing::warn!("{note}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stratus: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            on_signal.cancel();
        });
        stratus::run(settings, cancel, None).await
    });
    if let Err(e) = result {
        eprintln!("stratus: {e:#}");
        std::process::exit(1);
    }
}

/// A panic anywhere stops the process: a task that died (the WAL, a connection holding a
/// lock, a coordinator) would otherwise leave a broker that accepts connections and never
/// answers. The standard hook prints "thread '…' panicked at …" (and a backtrace with
/// RUST_BACKTRACE=1); the log line names what stopped; the exit status is SIGABRT's.
fn abort_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        tracing::error!(panic = %info, "a task panicked; aborting the broker");
        std::process::abort();
    }));
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn admin(
    connect: &stratus::cluster::cli::Connect,
    command: stratus::cluster::cli::AdminCommand,
) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stratus admin: {e}");
            return 1;
        }
    };
    match runtime.block_on(stratus::cluster::cli::run(connect, command)) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            eprintln!("stratus admin: {e:#}");
            1
        }
    }
}
