//! `flotilla`: one binary, one subcommand per part. Parses flags, opens
//! what the parts need, and hands over to the libraries.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use flotilla_agent::config::{apply_ecs_config, apply_vars, AgentConfig};
use flotilla_agent::state_dir::{default_state_dir, DEFAULT_STATE_ROOT};
use flotilla_agent::HostAgent;
use flotilla_auth::{Credentials, Principal};
use flotilla_client::Client;
use flotilla_model::ecs;
use flotilla_sim::{Behaviour, HostSpec};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// mimalloc rather than glibc's malloc: the control plane allocates and
/// frees small objects at a high rate (tasks, messages, JSON), and under
/// glibc that cost about 15% of its CPU at a million tasks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "A self-hosted container orchestrator that speaks the Amazon ECS API."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The control plane: the ECS API on a durable store.
    Server(ServerArgs),
    /// A host agent: registers this host as a container instance and runs
    /// the tasks placed on it in Docker. AWS credentials come from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the region from
    /// AWS_DEFAULT_REGION (or AWS_REGION).
    Agent(AgentArgs),
    /// A control plane and one local agent in one process, for a laptop.
    Dev(DevArgs),
    /// Simulated hosts (no containers) for scale tests and benchmarks: each
    /// registers as a container instance, holds the agent connection and
    /// reports its tasks RUNNING or STOPPED as asked. Credentials and region
    /// as for `agent`. Runs until SIGINT or SIGTERM.
    Sim(SimArgs),
    /// A load-balancer node: serves the listeners of the load balancers the
    /// control plane places on its addresses (ALB over HTTP, NLB over TCP),
    /// health-checks their targets and reports back. Credentials and region
    /// as for `agent`. Runs until SIGINT or SIGTERM.
    Lb(LbArgs),
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

#[derive(clap::Args)]
struct AgentArgs {
    /// The control plane's URL (`http://HOST:PORT`).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: String,
    /// Cluster to join (else ECS_CLUSTER from the ecs.config file or the
    /// environment, else `default`).
    #[arg(long)]
    cluster: Option<String>,
    #[command(flatten)]
    host: HostArgs,
    /// The agent's state folder (its container instance ARN, metadata
    /// port, log shipping positions), locked while the agent runs. Default:
    /// /var/lib/flotilla-agent, or /var/lib/flotilla-agent/HOST-IP with
    /// --host-ip, so agents sharing a machine keep apart. $STATE_DIRECTORY
    /// (systemd's StateDirectory=) replaces /var/lib/flotilla-agent.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The ECS agent's configuration file; its keys that apply are read
    /// (ECS_CLUSTER, ECS_RESERVED_MEMORY, ECS_INSTANCE_ATTRIBUTES, …).
    #[arg(long, default_value = DEFAULT_ECS_CONFIG)]
    ecs_config: PathBuf,
}

/// Flags `agent` and `dev` share.
#[derive(clap::Args)]
struct HostArgs {
    /// Address this host's tasks bind their host ports on; distinct
    /// addresses (127.0.0.2, 127.0.0.3, …) let several agents share one
    /// machine as separate hosts.
    #[arg(long)]
    host_ip: Option<String>,
    #[arg(long)]
    availability_zone: Option<String>,
    /// A custom attribute of the container instance (repeatable).
    #[arg(long = "attribute", value_name = "K=V", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// Port of the task metadata endpoint on the Docker bridge gateway.
    /// Default: 51679 without --host-ip; with it, a free port picked at the
    /// first start and remembered in the state folder (so agents sharing a
    /// machine never clash). 0 picks a new free port every start.
    #[arg(long)]
    metadata_port: Option<u16>,
    /// How often running containers' CPU and memory are sampled and sent to
    /// the control plane (e.g. 1s, 5s; 0 turns sampling off). Default 5s,
    /// or ECS_POLLING_METRICS_WAIT_DURATION.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    stats_interval: Option<Interval>,
}

#[derive(clap::Args)]
struct DevArgs {
    /// Address the control plane listens on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the store, the generated credentials and the agent's state live.
    #[arg(long, default_value = ".flotilla")]
    data_dir: PathBuf,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(clap::Args)]
struct LbArgs {
    /// The control plane's URL (`http://HOST:PORT`).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: String,
    /// Addresses this node may bind listeners on; the control plane gives
    /// each load balancer one of them, so several can use the same port.
    #[arg(
        long = "address",
        value_name = "IP[,IP…]",
        value_delimiter = ',',
        required = true
    )]
    addresses: Vec<IpAddr>,
    /// The node's name as the control plane knows it (default: lb-FIRST-ADDRESS).
    #[arg(long)]
    name: Option<String>,
    /// Serve the node's figures at `GET /metrics` (Prometheus text) on this
    /// address (e.g. 127.0.0.1:9101); not served by default.
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Threads serving the listeners, each with its own event loop
    /// (default: one per core; 0 serves them on the node's main thread).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

#[derive(clap::Args)]
struct SimArgs {
    /// The control plane's URL (`http://HOST:PORT`).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: String,
    /// Cluster to join (it must exist).
    #[arg(long)]
    cluster: String,
    /// How many hosts to simulate.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    hosts: u32,
    /// CPU units each host registers.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(i32).range(1..))]
    cpu: i32,
    /// Memory (MiB) each host registers.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(i32).range(1..))]
    memory: i32,
    /// Availability zones to spread the hosts over, round robin
    /// (the `ecs.availability-zone` attribute).
    #[arg(long, value_name = "A,B,…", value_delimiter = ',', value_parser = parse_zone)]
    zones: Vec<String>,
    /// A custom attribute of every host (repeatable).
    #[arg(long = "attribute", value_name = "K=V", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// Tasks of this task definition family fail to start (repeatable).
    #[arg(long = "fail-family", value_name = "FAMILY")]
    fail_families: Vec<String>,
    /// Tasks of this family report UNHEALTHY once RUNNING (repeatable).
    #[arg(long = "unhealthy-family", value_name = "FAMILY")]
    unhealthy_families: Vec<String>,
    /// Tasks of this family report HEALTHY once RUNNING (repeatable).
    #[arg(long = "healthy-family", value_name = "FAMILY")]
    healthy_families: Vec<String>,
}

const DEFAULT_ECS_CONFIG: &str = "/etc/ecs/ecs.config";
const DEV_CLUSTER: &str = "default";

fn parse_attribute(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not K=V")),
    }
}

/// An interval flag: a duration, or off (`0`).
#[derive(Clone, Copy)]
struct Interval(Option<std::time::Duration>);

/// A duration such as `1s` or `500ms`; zero means off.
fn parse_interval(s: &str) -> Result<Interval, String> {
    let d = flotilla_agent::config::parse_duration(s)
        .ok_or_else(|| format!("'{s}' is not a duration such as 1s, 5s or 500ms"))?;
    Ok(Interval((!d.is_zero()).then_some(d)))
}

fn parse_zone(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an availability zone name cannot be empty".to_string());
    }
    Ok(s.to_string())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A load-balancer node serves its listeners on worker threads of its
    // own (`--workers`); its main thread only talks to the control plane
    // and runs the health checks.
    let runtime = match cli.command {
        Command::Lb(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(args)),
        Command::Agent(args) => runtime.block_on(agent(args)),
        Command::Dev(args) => runtime.block_on(dev(args)),
        Command::Sim(args) => runtime.block_on(sim(args)),
        Command::Lb(args) => runtime.block_on(lb(args)),
    }
}

/// A control plane ready to serve: its listener, store and credentials.
struct ServerSetup {
    listener: TcpListener,
    stores: flotilla_server::Stores,
    credentials: Credentials,
    /// The generated development principal, when no credentials file was given.
    dev_principal: Option<Principal>,
}

impl ServerSetup {
    /// Opens the data dir and the store, loads or generates credentials, binds.
    async fn open(
        listen: SocketAddr,
        data_dir: &Path,
        credentials_file: Option<&Path>,
    ) -> anyhow::Result<ServerSetup> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let (credentials, dev_principal) = credentials(credentials_file, data_dir, listen)?;
        let stores = flotilla_server::Stores::open(data_dir).context("opening the stores")?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        Ok(ServerSetup {
            listener,
            stores,
            credentials,
            dev_principal,
        })
    }

    fn endpoint(&self) -> anyhow::Result<String> {
        Ok(format!("http://{}", self.listener.local_addr()?))
    }

    /// The lines to paste into a shell to use this server.
    fn print_environment(&self, region: &str) -> anyhow::Result<()> {
        if let Some(p) = &self.dev_principal {
            println!("export AWS_ACCESS_KEY_ID={}", p.access_key_id);
            println!("export AWS_SECRET_ACCESS_KEY={}", p.secret_access_key());
            println!("export AWS_DEFAULT_REGION={region}");
            println!("export AWS_ENDPOINT_URL={}", self.endpoint()?);
        }
        Ok(())
    }

    async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        flotilla_server::run(self.listener, self.stores, self.credentials, shutdown).await
    }
}

/// Loads the credentials file, or creates dev credentials in the data dir
/// (loopback only).
fn credentials(
    file: Option<&Path>,
    data_dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<(Credentials, Option<Principal>)> {
    if let Some(file) = file {
        let creds = Credentials::load(file)
            .with_context(|| format!("loading credentials from {}", file.display()))?;
        return Ok((creds, None));
    }
    if !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen} without --credentials: generated development credentials are for loopback addresses only. \
             Pass --credentials FILE, or listen on 127.0.0.1."
        );
    }
    let (creds, principal, created) =
        Credentials::generate_dev(data_dir).context("creating development credentials")?;
    if created {
        let path = data_dir.join(flotilla_auth::DEV_CREDENTIALS_FILE);
        eprintln!(
            "Created development credentials in {} (mode 0600).",
            path.display()
        );
    }
    Ok((creds, Some(principal)))
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let setup = ServerSetup::open(args.listen, &args.data_dir, args.credentials.as_deref()).await?;
    setup.print_environment(&args.region)?;
    eprintln!("Flotilla control plane listening on {}", setup.endpoint()?);
    setup.run(shutdown_signal()).await
}

/// The agent's configuration: ecs.config, then `ECS_*` / region variables
/// from the environment, then flags.
fn agent_config(
    cluster: Option<String>,
    host: &HostArgs,
    ecs_config: Option<&Path>,
    ecs_config_required: bool,
) -> anyhow::Result<AgentConfig> {
    let mut config = AgentConfig::default();
    if let Some(path) = ecs_config {
        match std::fs::read_to_string(path) {
            Ok(text) => apply_ecs_config(&mut config, &text)
                .with_context(|| format!("in {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !ecs_config_required => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    apply_vars(
        &mut config,
        &env_vars(|k| k.starts_with("ECS_") || is_region_var(k)),
    )
    .context("in the environment")?;
    if let Some(c) = cluster {
        config.cluster = c;
    }
    if let Some(ip) = &host.host_ip {
        let parsed: std::net::IpAddr = ip
            .parse()
            .with_context(|| format!("--host-ip {ip} is not an IP address"))?;
        config.host_ip = parsed.to_string();
    }
    if let Some(az) = &host.availability_zone {
        config.availability_zone = Some(az.clone());
    }
    config.attributes.extend(host.attributes.iter().cloned());
    if let Some(port) = host.metadata_port {
        config.metadata_port = Some(port);
    }
    if let Some(Interval(interval)) = host.stats_interval {
        config.stats_interval = interval;
    }
    Ok(config)
}

/// Where agents keep their state folders: systemd's $STATE_DIRECTORY (its
/// first entry) when set, else /var/lib/flotilla-agent.
fn state_root() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT))
}

/// The environment variables whose names `keep` accepts.
fn env_vars(keep: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
    std::env::vars().filter(|(k, _)| keep(k)).collect()
}

fn is_region_var(name: &str) -> bool {
    name == "AWS_DEFAULT_REGION" || name == "AWS_REGION"
}

/// The region as `agent` reads it from the environment (AWS_DEFAULT_REGION,
/// else AWS_REGION, else the agent's default), for commands that take no
/// ecs.config.
fn region_from_env() -> anyhow::Result<String> {
    let mut config = AgentConfig::default();
    apply_vars(&mut config, &env_vars(is_region_var)).context("in the environment")?;
    Ok(config.region)
}

/// A client signing with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in `region`.
fn client_from_env(endpoint: &str, region: &str) -> anyhow::Result<Client> {
    let key = std::env::var("AWS_ACCESS_KEY_ID").context("AWS_ACCESS_KEY_ID is not set")?;
    let secret =
        std::env::var("AWS_SECRET_ACCESS_KEY").context("AWS_SECRET_ACCESS_KEY is not set")?;
    Ok(Client::ecs(endpoint, &key, &secret, region))
}

/// A shutdown flag set on SIGINT or SIGTERM.
fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop, stopped) = shutdown_channel();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    stopped
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let explicit_config = args.ecs_config != Path::new(DEFAULT_ECS_CONFIG);
    let config = agent_config(
        args.cluster,
        &args.host,
        Some(&args.ecs_config),
        explicit_config,
    )?;
    let client = client_from_env(&args.endpoint, &config.region)?;
    // Keyed by the address as parsed, so `--host-ip` spellings of one address share a folder.
    let host_ip = args.host.host_ip.is_some().then(|| config.host_ip.clone());
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| default_state_dir(&state_root(), host_ip.as_deref()));
    let stopped = stop_on_signal();
    let host = match HostAgent::register(client, config, &data_dir, wait(stopped.clone())).await {
        Err(flotilla_agent::host::HostError::Interrupted) => return Ok(()),
        r => r?,
    };
    eprintln!("Flotilla agent running as {}", host.instance_arn());
    host.run(wait(stopped)).await?;
    Ok(())
}

async fn lb(args: LbArgs) -> anyhow::Result<()> {
    let client = client_from_env(&args.endpoint, &region_from_env()?)?;
    let name = args
        .name
        .unwrap_or_else(|| format!("lb-{}", args.addresses[0]));
    let stopped = stop_on_signal();
    eprintln!(
        "Flotilla load-balancer node {name} on {}",
        args.addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let gateway = flotilla_lb::GatewayConfig::new(client, &name, args.addresses);
    let mut options = flotilla_lb::NodeOptions::new(gateway);
    options.metrics_address = args.metrics;
    if let Some(n) = args.workers {
        options.workers = n;
    }
    flotilla_lb::run(options, wait(stopped)).await;
    Ok(())
}

/// The loopback addresses `flotilla dev`'s load-balancer node binds
/// listeners on: 127.0.0.20 to 127.0.0.29, one per load balancer.
fn dev_lb_addresses() -> Vec<IpAddr> {
    (20..30)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect()
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let setup = ServerSetup::open(args.listen, &args.data_dir, None).await?;
    let endpoint = setup.endpoint()?;
    let principal = setup
        .dev_principal
        .clone()
        .context("development credentials")?;
    let stopped = stop_on_signal();
    setup.print_environment(&args.region)?;
    let server = tokio::spawn(setup.run(wait(stopped.clone())));
    let client = Client::ecs(
        &endpoint,
        &principal.access_key_id,
        principal.secret_access_key(),
        &args.region,
    );
    ensure_cluster(&client, DEV_CLUSTER).await?;

    // One load-balancer node in-process; it keeps reconnecting (quietly)
    // while the control plane does not serve it.
    let mut gateway = flotilla_lb::GatewayConfig::new(client.clone(), "dev-lb", dev_lb_addresses());
    gateway.warn_on_failure = false;
    tokio::spawn(flotilla_lb::run(
        flotilla_lb::NodeOptions::new(gateway),
        wait(stopped.clone()),
    ));

    let mut host_args = args.host;
    // A laptop's tasks are for the laptop: bind their ports on loopback.
    host_args
        .host_ip
        .get_or_insert_with(|| "127.0.0.1".to_string());
    let mut config = agent_config(Some(DEV_CLUSTER.to_string()), &host_args, None, false)?;
    config.region = args.region.clone();
    let agent = match HostAgent::register(
        client,
        config,
        &args.data_dir.join("agent"),
        wait(stopped.clone()),
    )
    .await
    {
        Ok(host) => {
            eprintln!(
                "Flotilla dev: control plane on {endpoint}, one agent ({}) in cluster {DEV_CLUSTER}, \
                 one load-balancer node on 127.0.0.20-127.0.0.29. \
                 Export the lines above, then try: aws ecs list-container-instances",
                host.instance_arn()
            );
            host.run(wait(stopped)).await.map_err(anyhow::Error::from)
        }
        Err(flotilla_agent::host::HostError::Interrupted) => Ok(()),
        Err(e) => Err(e.into()),
    };
    // The server stops on the same signal; if the agent failed, say why
    // and leave the server to it.
    if let Err(e) = agent {
        return Err(e.context("the local agent stopped"));
    }
    server.await.context("control plane task")??;
    Ok(())
}

async fn sim(args: SimArgs) -> anyhow::Result<()> {
    let client = client_from_env(&args.endpoint, &region_from_env()?)?;
    let stopped = stop_on_signal();
    let mut template = HostSpec::new(&args.cluster, args.cpu, args.memory);
    template.attributes.extend(args.attributes);
    let behaviour = Behaviour {
        fail_families: args.fail_families,
        unhealthy_families: args.unhealthy_families,
        healthy_families: args.healthy_families,
    };
    let count = args.hosts as usize;
    // About ten progress lines for a big fleet, one for a small one.
    let every = (count / 10).max(100);
    let progress = |done: usize, total: usize| {
        if done.is_multiple_of(every) || done == total {
            eprintln!("registered {done}/{total} hosts");
        }
    };
    let hosts = tokio::select! {
        started = flotilla_sim::start_hosts(&client, &template, count, &args.zones, &behaviour, progress) => {
            started.with_context(|| format!("starting {count} simulated hosts in cluster {} at {}", args.cluster, args.endpoint))?
        }
        _ = wait(stopped.clone()) => return Ok(()),
    };
    eprintln!(
        "all {count} simulated hosts connected to cluster {}; stop with Ctrl-C or SIGTERM",
        args.cluster
    );
    wait(stopped).await;
    // Dropping the hosts closes their connections.
    drop(hosts);
    Ok(())
}

/// Creates `name` unless an active cluster of that name exists.
async fn ensure_cluster(client: &Client, name: &str) -> anyhow::Result<()> {
    let found: ecs::DescribeClustersResponse = client
        .call(
            "DescribeClusters",
            &ecs::DescribeClustersRequest {
                clusters: Some(vec![name.to_string()]),
                ..Default::default()
            },
        )
        .await
        .context("DescribeClusters")?;
    let active = found.clusters.iter().flatten().any(|c| c.is_active());
    if !active {
        let _: ecs::CreateClusterResponse = client
            .call(
                "CreateCluster",
                &ecs::CreateClusterRequest {
                    cluster_name: Some(name.to_string()),
                    ..Default::default()
                },
            )
            .await
            .context("CreateCluster")?;
    }
    Ok(())
}

fn shutdown_channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
