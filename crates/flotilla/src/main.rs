//! `flotilla`: one binary, one subcommand per part. Parses flags, opens
//! what the parts need, and hands over to the libraries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use flotilla_auth::Credentials;
use flotilla_store::sqlite::SqliteStore;

#[derive(Parser)]
#[command(name = "flotilla", version, about = "A self-hosted container orchestrator that speaks the Amazon ECS API.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The control plane: the ECS API on a durable store.
    Server(ServerArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the store and generated credentials live.
    #[arg(long, default_value = ".flotilla")]
    data_dir: PathBuf,
    /// Credentials file (TOML). Without it, a key pair is generated in the data
    /// directory, and only loopback addresses may be listened on.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// The region shown in the printed environment (requests carry their own).
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(args)),
    }
}

/// Loads the credentials file, or creates dev credentials in the data dir
/// (loopback only), and says how to use them.
fn credentials(file: Option<&Path>, data_dir: &Path, listen: SocketAddr, region: &str) -> anyhow::Result<Credentials> {
    if let Some(file) = file {
        return Credentials::load(file).with_context(|| format!("loading credentials from {}", file.display()));
    }
    if !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen} without --credentials: generated development credentials are for loopback addresses only. \
             Pass --credentials FILE, or listen on 127.0.0.1."
        );
    }
    let (creds, principal, created) = Credentials::generate_dev(data_dir).context("creating development credentials")?;
    let path = data_dir.join(flotilla_auth::DEV_CREDENTIALS_FILE);
    if created {
        eprintln!("Created development credentials in {} (mode 0600).", path.display());
    }
    println!("export AWS_ACCESS_KEY_ID={}", principal.access_key_id);
    println!("export AWS_SECRET_ACCESS_KEY={}", principal.secret_access_key());
    println!("export AWS_DEFAULT_REGION={region}");
    println!("export AWS_ENDPOINT_URL=http://{listen}");
    Ok(creds)
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let creds = credentials(args.credentials.as_deref(), &args.data_dir, args.listen, &args.region)?;
    let store = SqliteStore::open(&args.data_dir.join("flotilla.db")).context("opening the store")?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    eprintln!("Flotilla control plane listening on http://{}", listener.local_addr()?);
    flotilla_server::run(listener, Arc::new(store), creds, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
