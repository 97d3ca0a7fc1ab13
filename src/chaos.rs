//! `seismo chaos ...`: the chaos agent.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use seismo_chaos::process::CommandPolicy;
use seismo_chaos::{AgentOptions, OtlpProtocol};
use seismo_net::Tokens;

#[derive(Subcommand)]
pub enum ChaosCommand {
    /// Toxiproxy-compatible fault proxy; exports a span for every fault it applies.
    Agent(AgentArgs),
}

#[derive(Args)]
pub struct AgentArgs {
    /// Address of the Toxiproxy-compatible REST API.
    #[arg(long, default_value = "127.0.0.1:8474")]
    api: String,
    /// OTLP endpoint for fault spans, e.g. http://127.0.0.1:4317 (seismo serve). None: no spans.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// OTLP transport for --otlp-endpoint.
    #[arg(long, value_enum, default_value = "grpc")]
    otlp_protocol: OtlpProtocol,
    /// Experiment id put on every fault span (a toxic's own `experiment` wins).
    #[arg(long, env = "SEISMO_EXPERIMENT_ID")]
    experiment_id: Option<String>,
    /// JSON array of proxies to create at start (the body `POST /populate` takes).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads for proxying; 0 = one per core, 1 = a single thread
    /// (fewest hand-offs between threads, lowest added latency).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// A bearer token and its roles, ROLE:TOKEN (see `seismo serve --help`); with any
    /// set, every API request needs one granting `chaos`. Repeatable; also
    /// SEISMO_AUTH_TOKENS, comma-separated
    #[arg(
        long = "auth-token",
        value_name = "ROLE:TOKEN",
        env = "SEISMO_AUTH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    auth_tokens: Vec<String>,
    /// Serve a non-loopback --api without tokens (otherwise refused: the API can
    /// break traffic and start commands)
    #[arg(long)]
    insecure: bool,
    /// Refuse `POST /processes`: no command can be started through the API
    #[arg(long, conflicts_with = "allow_command")]
    no_processes: bool,
    /// Only this program may be started through `POST /processes` (a bare name
    /// matches it anywhere on disk, a path only itself). Repeatable
    #[arg(long, value_name = "PROGRAM")]
    allow_command: Vec<String>,
}

pub fn run(command: ChaosCommand) -> anyhow::Result<()> {
    match command {
        ChaosCommand::Agent(args) => {
            let runtime = match args.threads {
                1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
                0 => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
                n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
            };
            let opts = AgentOptions {
                api: args.api,
                otlp_endpoint: args.otlp_endpoint,
                otlp_protocol: args.otlp_protocol,
                experiment: args.experiment_id,
                config: args.config,
                tokens: Tokens::parse(&args.auth_tokens).context("--auth-token")?,
                insecure: args.insecure,
                commands: if args.no_processes {
                    CommandPolicy::Refuse
                } else if args.allow_command.is_empty() {
                    CommandPolicy::Any
                } else {
                    CommandPolicy::Allow(args.allow_command)
                },
            };
            Ok(runtime.block_on(seismo_chaos::run(opts, crate::serve::shutdown_signal()))?)
        }
    }
}
