//! `seismo chaos ...`: the chaos agent, and experiments run against it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use seismo_chaos::faults::ExportSecurity;
use seismo_chaos::process::CommandPolicy;
use seismo_chaos::{AgentOptions, OtlpProtocol};
use seismo_experiment::diff::{self, Tolerance};
use seismo_experiment::{report, Experiment, ExperimentError, Journal, RunOptions, EXIT_INVALID, EXIT_REGRESSED};
use seismo_net::{TlsFiles, Tokens};

#[derive(Subcommand)]
pub(crate) enum ChaosCommand {
    /// Toxiproxy-compatible fault proxy; exports a span for every fault it applies.
    Agent(AgentArgs),
    /// Runs an experiment: steady state, faults, rollback, verdict. Exit code:
    /// 0 completed, 1 failed, 2 invalid file, 3 deviated, 4 aborted, 5 regressed
    /// against --baseline.
    Run(RunArgs),
    /// Checks an experiment file and prints its plan; touches nothing.
    Validate(ValidateArgs),
    /// Compares two journals of one experiment; exit 5 when the second regressed.
    Diff(DiffArgs),
}

#[derive(Args)]
pub(crate) struct AgentArgs {
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
    /// PEM certificate chain: serve the API over TLS (with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): API clients must present a certificate it signed
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Token sent with fault spans (`authorization: Bearer`), for a collector that
    /// requires the ingest role
    #[arg(long, value_name = "TOKEN", env = "SEISMO_OTLP_TOKEN", hide_env_values = true)]
    otlp_token: Option<String>,
    /// PEM CA certificate(s) to trust for an https:// --otlp-endpoint (gRPC), besides
    /// the public roots
    #[arg(long, value_name = "FILE")]
    otlp_ca_cert: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The experiment file (TOML).
    experiment: PathBuf,
    /// Write the journal (JSON) here.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Write a Markdown report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Validate and print the plan; contact nothing, inject nothing.
    #[arg(long)]
    dry_run: bool,
    /// A journal of an earlier run of this experiment: flag what got worse.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// How many worst-hurt traces to keep as exemplars.
    #[arg(long, default_value_t = 5)]
    exemplars: usize,
}

#[derive(Args)]
pub(crate) struct ValidateArgs {
    /// The experiment file (TOML).
    experiment: PathBuf,
}

#[derive(Args)]
pub(crate) struct DiffArgs {
    /// The baseline journal.
    old: PathBuf,
    /// The journal to check.
    new: PathBuf,
}

pub(crate) fn run(command: ChaosCommand) -> anyhow::Result<()> {
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
                tls: match (args.tls_cert, args.tls_key) {
                    (Some(cert), Some(key)) => Some(TlsFiles { cert, key, client_ca: args.tls_client_ca }),
                    _ => None,
                },
                export: ExportSecurity { token: args.otlp_token, ca_cert: args.otlp_ca_cert },
            };
            Ok(runtime.block_on(seismo_chaos::run(opts, crate::serve::shutdown_signal()))?)
        }
        ChaosCommand::Run(args) => {
            let code = run_experiment(args)?;
            std::process::exit(code)
        }
        ChaosCommand::Validate(args) => {
            let experiment = load_or_exit(&args.experiment);
            println!("{} is a valid experiment", args.experiment.display());
            print!("{}", seismo_experiment::plan::plan(&experiment));
            Ok(())
        }
        ChaosCommand::Diff(args) => {
            let old = Journal::read(&args.old)?;
            let new = Journal::read(&args.new)?;
            let found = diff::regressions(&old, &new, &Tolerance::default());
            print!("{}", diff::render(&found));
            std::process::exit(if found.is_empty() { 0 } else { EXIT_REGRESSED })
        }
    }
}

/// The experiment, or exit 2 with the file's error (line, column, field).
fn load_or_exit(path: &std::path::Path) -> Experiment {
    match Experiment::load(path) {
        Ok(e) => e,
        Err(e @ ExperimentError::Invalid { .. }) => {
            eprintln!("invalid experiment: {e}");
            std::process::exit(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("cannot read the experiment: {e}");
            std::process::exit(EXIT_INVALID)
        }
    }
}

/// Runs one experiment; the exit code says how it ended.
fn run_experiment(args: RunArgs) -> anyhow::Result<i32> {
    let experiment = load_or_exit(&args.experiment);
    if args.dry_run {
        print!("{}", seismo_experiment::plan::plan(&experiment));
        return Ok(0);
    }
    let baseline = match &args.baseline {
        Some(path) => Some(Journal::read(path).with_context(|| "--baseline")?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut journal = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        let watcher = tokio::spawn(count_signals(tx));
        let options = RunOptions {
            experiment_file: Some(args.experiment.display().to_string()),
            exemplars: args.exemplars,
            run_id: None,
        };
        let progress = |line: &str| eprintln!("seismo chaos run: {line}");
        let journal = seismo_experiment::run(&experiment, &options, rx, &progress).await;
        watcher.abort();
        Ok::<_, anyhow::Error>(journal)
    })?;
    let mut code = journal.status.exit_code();
    if let Some(old) = &baseline {
        let found = diff::regressions(old, &journal, &Tolerance::default());
        if !found.is_empty() && code == 0 {
            code = EXIT_REGRESSED;
        }
        journal.regressions = Some(found);
    }
    print!("{}", report::summary(&journal));
    if let Some(found) = &journal.regressions {
        print!("{}", diff::render(found));
    }
    // The verdict stands when a file cannot be written; a run that would
    // have exited 0 exits 1 so CI notices the missing file.
    let mut written = true;
    if let Some(path) = &args.journal {
        if let Err(e) = journal.write(path) {
            eprintln!("seismo chaos run: {e}");
            written = false;
        }
    }
    if let Some(path) = &args.report {
        if let Err(e) = std::fs::write(path, report::markdown(&journal)) {
            eprintln!("seismo chaos run: report {}: {e}", path.display());
            written = false;
        }
    }
    Ok(if written || code != 0 { code } else { 1 })
}

/// Counts SIGINT and SIGTERM into `tx` for the whole run. Installing the
/// handlers replaces the default "terminate", so a second Ctrl-C cannot kill
/// the process halfway through its rollback.
async fn count_signals(tx: tokio::sync::watch::Sender<u32>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        let n = *tx.borrow() + 1;
        if n == 1 {
            eprintln!("seismo chaos run: {name}: stopping the method, rolling back");
        } else {
            eprintln!("seismo chaos run: {name} again: still rolling back, the faults are being removed");
        }
        let _ = tx.send(n);
    }
}
