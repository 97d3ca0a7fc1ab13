//! `seismo demo`: everything at once on a sample system. Starts `seismo
//! serve`, a chaos agent and the four sample services (each its own child
//! process of this binary), puts an agent proxy in front of every service,
//! drives steady traffic, runs the sample experiment through the runner,
//! and on Ctrl-C / SIGTERM (or after `--duration`) takes it all down in
//! order: experiment rolled back, traffic stopped, toxics and proxies
//! removed, services, agent and collector stopped.
//!
//! Children are separate processes, each in its own process group: a
//! terminal's Ctrl-C reaches only this process, which then stops them in
//! the order above (a service stopped before its proxies would turn the
//! last requests into errors that no fault caused).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use seismo_client::api::toxiproxy::ProxyRequest;
use seismo_client::{AgentClient, Client, StatsQuery};
use seismo_demo::{Role, Traffic, TrafficCounts};
use seismo_experiment::{report, Experiment, RunOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

/// The sample experiment, built in so `seismo demo` works from any directory.
const DEMO_EXPERIMENT: &str = include_str!("../examples/experiments/demo.toml");

/// The services' own stderr: quiet, since every failed call they log is a
/// fault the demo caused on purpose; their log records are in the store.
const SERVICE_LOG: &str = "error,seismo_demo=off";

/// Set on every child: the demo's pid, so the child stops with it (see [`follow_parent`]).
const PARENT_ENV: &str = "SEISMO_DEMO_PARENT";

/// How long a child of a demo that died may take over its clean stop before
/// it exits outright (what it acknowledged is in its WAL already).
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// In a child of `seismo demo`: asks the kernel for a SIGTERM when the demo
/// dies, so even a `kill -9` of the demo leaves no collector, agent or
/// service running (each stops as on Ctrl-C). A watcher thread bounds that
/// stop: a child still running [`ORPHAN_GRACE`] after its demo is gone (its
/// clean stop stuck, or the signal never came) exits outright. A no-op in
/// any other process.
pub(crate) fn follow_parent() {
    let Some(parent) = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse::<i32>().ok()) else {
        return;
    };
    let orphaned = move || nix::unistd::getppid().as_raw() != parent;
    let signalled = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).is_ok();
    // The demo may have died before the request above: then nobody would stop us.
    if signalled && orphaned() {
        std::process::exit(1);
    }
    let watcher = std::thread::Builder::new().name("demo-parent".into()).spawn(move || {
        while !orphaned() {
            std::thread::sleep(Duration::from_millis(250));
        }
        std::thread::sleep(ORPHAN_GRACE);
        // Not eprintln!: with nobody left reading stderr it would panic, and this thread must exit the process.
        let _ = writeln!(
            std::io::stderr(),
            "seismo: the demo that started this process (pid {parent}) is gone and stopping cleanly took over \
             {ORPHAN_GRACE:?}; exiting now"
        );
        std::process::exit(1);
    });
    // Without the watcher (no thread to be had), the parent-death signal alone stops us.
    drop(watcher);
}

/// How long a child may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Where the demo's telemetry is stored (kept after the demo, for `seismo serve --data-dir`)
    #[arg(long, default_value = "seismo-demo")]
    data_dir: PathBuf,
    /// OTLP/gRPC listen address of the collector
    #[arg(long, default_value = "127.0.0.1:4317")]
    otlp_grpc: SocketAddr,
    /// OTLP/HTTP listen address of the collector
    #[arg(long, default_value = "127.0.0.1:4318")]
    otlp_http: SocketAddr,
    /// Query API (Jaeger-compatible) listen address
    #[arg(long, default_value = "127.0.0.1:16686")]
    http: SocketAddr,
    /// Chaos agent API (Toxiproxy-compatible) listen address
    #[arg(long, default_value = "127.0.0.1:8474")]
    agent_api: SocketAddr,
    /// Stop after this long (`90s`, `5m`) [default: run until Ctrl-C]
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Orders a second the traffic sends to the frontend (at most 1000)
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Send no traffic (drive the frontend yourself)
    #[arg(long)]
    no_traffic: bool,
    /// Run no experiment (inject faults yourself through the agent)
    #[arg(long)]
    no_experiment: bool,
    /// The experiment to run; its [agent] and [query] URLs are replaced by the
    /// demo's [default: examples/experiments/demo.toml, built in]
    #[arg(long, value_name = "FILE")]
    experiment: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    seismo_experiment::duration::Dur::parse(text).map(|d| d.0)
}

/// Refuses at once, naming the port and its flag, when a fixed port is taken.
fn check_ports(args: &DemoArgs) -> anyhow::Result<()> {
    let ports = [
        (args.otlp_grpc, "--otlp-grpc"),
        (args.otlp_http, "--otlp-http"),
        (args.http, "--http"),
        (args.agent_api, "--agent-api"),
    ];
    for (addr, flag) in ports {
        if addr.port() == 0 {
            continue;
        }
        if let Err(e) = std::net::TcpListener::bind(addr) {
            anyhow::bail!(
                "port {} ({addr}, {flag}) is already in use ({e}): stop what listens there \
                 (another seismo?) or pass {flag} with another address",
                addr.port()
            );
        }
    }
    Ok(())
}

/// A child process of this binary, stopped with SIGTERM (killed if it hangs).
struct Managed {
    name: String,
    child: tokio::process::Child,
    pid: u32,
}

impl Managed {
    /// Starts `seismo ARGS...` in its own process group and waits for the
    /// stdout line starting with `ready`; returns it. `log` is its SEISMO_LOG
    /// filter unless the user set one.
    async fn start(name: &str, args: &[String], ready: &str, log: &str) -> anyhow::Result<(Managed, String)> {
        let exe = std::env::current_exe().context("finding the seismo binary")?;
        let mut command = tokio::process::Command::new(exe);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        command.process_group(0).kill_on_drop(true).env(PARENT_ENV, std::process::id().to_string());
        if std::env::var_os("SEISMO_LOG").is_none() {
            command.env("SEISMO_LOG", log);
        }
        let mut child = command.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().unwrap_or_default();
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with(ready) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        // Keep reading, so a chatty child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut managed = Managed { name: name.to_string(), child, pid };
        match found {
            Ok(Some(line)) => Ok((managed, line)),
            Ok(None) => {
                let status = managed.child.wait().await?;
                anyhow::bail!("{name} exited before it was ready ({status}); its messages are above")
            }
            Err(_) => {
                managed.stop().await;
                anyhow::bail!("{name} was not ready within {START_TIMEOUT:?}")
            }
        }
    }

    /// SIGTERM, then a kill when it is still there after [`STOP_TIMEOUT`].
    async fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) if !status.success() => eprintln!("seismo demo: {} exited with {status}", self.name),
            Ok(_) => {}
            Err(_) => {
                eprintln!("seismo demo: {} did not stop within {STOP_TIMEOUT:?}; killed it", self.name);
                let _ = self.child.kill().await;
            }
        }
    }
}

/// The value of `key=` on a ready line.
fn field<'a>(line: &'a str, key: &str) -> anyhow::Result<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .with_context(|| format!("no {key}= in {line:?}"))
}

/// Connectable form of a listen address (`0.0.0.0` and `::` become loopback).
fn local_url(addr: &str) -> anyhow::Result<String> {
    let mut addr: SocketAddr = addr.parse().with_context(|| format!("address {addr:?}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{addr}"))
}

/// Everything the demo started, stopped in reverse.
#[derive(Default)]
struct Running {
    /// serve, agent, then the services in start order.
    children: Vec<Managed>,
    agent: Option<AgentClient>,
    proxies: Vec<String>,
}

impl Running {
    /// Removes every toxic and the demo's proxies, then stops the children
    /// last-started first. Says what it could not undo.
    async fn stop(mut self) {
        if let Some(agent) = &self.agent {
            if let Err(e) = agent.reset().await {
                eprintln!("seismo demo: resetting the agent's toxics: {e}");
            }
            for name in &self.proxies {
                if let Err(e) = agent.delete_proxy(name).await {
                    eprintln!("seismo demo: removing proxy {name}: {e}");
                }
            }
        }
        while let Some(mut child) = self.children.pop() {
            child.stop().await;
        }
    }
}

/// Counts SIGINT and SIGTERM into `tx` (the experiment runner's interrupt
/// count); the demo stops at the first.
async fn count_signals(tx: Arc<watch::Sender<u32>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tx.send_modify(|n| *n += 1);
        if *tx.borrow() == 1 {
            eprintln!("seismo demo: stopping (rolling back faults, stopping services)");
        }
    }
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0 && args.rate <= 1000.0, "--rate must be above 0 and at most 1000 orders a second");
    check_ports(&args)?;
    let experiment = if args.no_experiment {
        None
    } else {
        Some(match &args.experiment {
            Some(path) => Experiment::load(path)?,
            None => Experiment::parse(DEMO_EXPERIMENT, "examples/experiments/demo.toml (built in)")?,
        })
    };
    let (interrupt_tx, interrupts) = watch::channel(0u32);
    let interrupt_tx = Arc::new(interrupt_tx);
    let signals = tokio::spawn(count_signals(interrupt_tx.clone()));
    let mut running = Running::default();
    let result = match start(&args, &mut running, interrupts.clone()).await {
        Ok(urls) => drive(&args, urls, experiment, &interrupt_tx, interrupts.clone()).await,
        Err(e) => Err(e),
    };
    running.stop().await;
    signals.abort();
    if result.is_err() && *interrupts.borrow() > 0 {
        // Ctrl-C while starting: what had started is stopped; that is no failure.
        println!("seismo demo: stopped before it was ready");
        return Ok(());
    }
    result?;
    println!("seismo demo: stopped; no proxy, toxic or process of the demo is left");
    Ok(())
}

/// Where the started pieces answer.
struct Urls {
    query: String,
    agent: String,
    frontend: String,
}

/// Starts the collector, the agent, the services and their proxies; stops
/// early (with what started recorded in `running`) on an error or a signal.
async fn start(args: &DemoArgs, running: &mut Running, interrupts: watch::Receiver<u32>) -> anyhow::Result<Urls> {
    let interrupted = || *interrupts.borrow() > 0;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    println!("seismo demo: telemetry goes to {}", data_dir.display());
    let serve_args: Vec<String> = vec![
        "serve".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--otlp-grpc".into(),
        args.otlp_grpc.to_string(),
        "--otlp-http".into(),
        args.otlp_http.to_string(),
        "--http".into(),
        args.http.to_string(),
        // Small flushes: the demo's segments appear on disk within seconds.
        "--flush-interval-secs".into(),
        "10".into(),
    ];
    let (serve, line) = Managed::start("seismo serve", &serve_args, "seismo ready:", "warn").await?;
    running.children.push(serve);
    let otlp_grpc = local_url(field(&line, "otlp-grpc")?)?;
    let query = local_url(field(&line, "http")?)?;
    println!(
        "seismo demo: collector on {otlp_grpc} (OTLP/gRPC), {} (OTLP/HTTP); query API on {query}",
        field(&line, "otlp-http")?
    );
    anyhow::ensure!(!interrupted(), "interrupted");

    let agent_args: Vec<String> = vec![
        "chaos".into(),
        "agent".into(),
        "--api".into(),
        args.agent_api.to_string(),
        "--otlp-endpoint".into(),
        otlp_grpc.clone(),
        "--no-processes".into(),
    ];
    let (agent_child, line) =
        Managed::start("the chaos agent", &agent_args, "seismo chaos agent ready:", "warn").await?;
    running.children.push(agent_child);
    let agent_url = local_url(field(&line, "api")?)?;
    let agent = AgentClient::new(&agent_url)?;
    running.agent = Some(agent.clone());
    println!("seismo demo: chaos agent on {agent_url}");

    let mut proxies = std::collections::BTreeMap::new();
    for role in Role::START_ORDER {
        anyhow::ensure!(!interrupted(), "interrupted");
        let mut service_args: Vec<String> =
            vec!["demo-service".into(), role.name().into(), "--otlp-endpoint".into(), otlp_grpc.clone()];
        for callee in role.downstreams() {
            let proxy: &String = &proxies[callee];
            service_args.extend(["--downstream".into(), format!("{}={proxy}", callee.name())]);
        }
        let (service, line) =
            Managed::start(role.name(), &service_args, "seismo demo-service ready:", SERVICE_LOG).await?;
        let pid = service.pid;
        running.children.push(service);
        let listen = field(&line, "listen")?.to_string();
        let proxy = agent
            .create_proxy(&ProxyRequest {
                name: Some(role.name().into()),
                listen: Some("127.0.0.1:0".into()),
                upstream: Some(listen.clone()),
                enabled: Some(true),
            })
            .await
            .with_context(|| format!("creating the {} proxy", role.name()))?;
        running.proxies.push(role.name().to_string());
        let proxy_url = local_url(&proxy.listen)?;
        println!(
            "seismo demo: {:<9} on {listen} (pid {pid}), reached through proxy {:?} at {proxy_url}",
            role.name(),
            role.name()
        );
        proxies.insert(role, proxy_url);
    }
    let pids: Vec<String> = running.children.iter().map(|c| c.pid.to_string()).collect();
    let frontend = proxies[&Role::Frontend].clone();
    // One line for scripts and tests.
    println!("seismo demo ready: http={query} agent={agent_url} frontend={frontend} pids={}", pids.join(","));
    Ok(Urls { query, agent: agent_url, frontend })
}

/// Traffic and the experiment until `--duration` passes or a signal comes.
async fn drive(
    args: &DemoArgs,
    urls: Urls,
    experiment: Option<Experiment>,
    interrupt_tx: &watch::Sender<u32>,
    mut interrupts: watch::Receiver<u32>,
) -> anyhow::Result<()> {
    let counts = Arc::new(TrafficCounts::default());
    let (stop_traffic, traffic_stopped) = watch::channel(false);
    let traffic = if args.no_traffic {
        None
    } else {
        Some(tokio::spawn(Traffic::new(&urls.frontend, args.rate)?.run(counts.clone(), traffic_stopped)))
    };
    print_next_steps(&urls, args);
    let runner = experiment.map(|mut experiment| {
        experiment.agent.url = toml::Spanned::new(0..0, urls.agent.clone());
        experiment.query.url = toml::Spanned::new(0..0, urls.query.clone());
        let query = Client::new(&urls.query);
        let interrupts = interrupts.clone();
        let wait_for_traffic = !args.no_traffic;
        tokio::spawn(async move {
            if wait_for_traffic {
                let query = query?;
                if !traffic_recorded(&query, interrupts.clone()).await {
                    return Ok(());
                }
            }
            let progress = |line: &str| eprintln!("seismo chaos run: {line}");
            let journal = seismo_experiment::run(&experiment, &RunOptions::default(), interrupts, &progress).await;
            print!("{}", report::summary(&journal));
            println!("seismo demo: experiment {} ended {}", journal.run_id, journal.status.as_str());
            Ok::<_, anyhow::Error>(())
        })
    });

    let started = Instant::now();
    let until = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = until => interrupt_tx.send_modify(|n| *n += 1),
        _ = interrupts.wait_for(|n| *n > 0) => {}
    }
    // The runner rolls its faults back on the interrupt; wait for that first.
    if let Some(runner) = runner {
        match tokio::time::timeout(Duration::from_secs(60), runner).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("seismo demo: experiment: {e:#}"),
            Ok(Err(e)) => eprintln!("seismo demo: experiment task: {e}"),
            Err(_) => eprintln!("seismo demo: the experiment did not finish its rollback within 60s"),
        }
    }
    let _ = stop_traffic.send(true);
    if let Some(traffic) = traffic {
        let _ = traffic.await;
        let (ok, failed) = counts.snapshot();
        println!("seismo demo: {} orders in {:.0?}: {ok} answered, {failed} failed", ok + failed, started.elapsed());
    }
    Ok(())
}

/// Waits until the collector has the frontend's and checkout's requests, so
/// the experiment's "before" probes measure something; false on a signal.
async fn traffic_recorded(query: &Client, mut interrupts: watch::Receiver<u32>) -> bool {
    loop {
        let stats = query.stats(&StatsQuery { lookback: Some(Duration::from_secs(10)), ..StatsQuery::default() }).await;
        if let Ok(stats) = stats {
            let requests =
                |name: &str| stats.services.iter().filter(|s| s.service == name).map(|s| s.request_count).sum::<u64>();
            if requests("frontend") >= 10 && requests("checkout") >= 10 {
                return true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = interrupts.wait_for(|n| *n > 0) => return false,
        }
    }
}

fn print_next_steps(urls: &Urls, args: &DemoArgs) {
    let Urls { query, agent, frontend } = urls;
    let stop = match args.duration {
        Some(d) => format!("The demo stops by itself after {d:?} (or on Ctrl-C)."),
        None => "The demo runs until Ctrl-C, which stops everything.".to_string(),
    };
    let commands = [
        (format!("seismo tui --query-url {query}"), "the dashboard: services, traces, faults, logs"),
        (format!("curl {query}/api/services"), "the Jaeger API (Grafana's Jaeger data source works too)"),
        (format!("curl '{frontend}/buy?item=lamp'"), "one order, through the frontend's proxy"),
        (format!("curl {agent}/proxies"), "the proxies and their toxics (toxiproxy-cli works too)"),
    ];
    let width = commands.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let traffic = if args.no_traffic { "No traffic is sent." } else { "Orders arrive steadily." };
    let experiment = if args.no_experiment {
        "No experiment runs."
    } else {
        "Soon an experiment slows payments down, then makes inventory refuse reservations."
    };
    println!();
    println!("The sample shop is running: frontend -> checkout -> inventory, payments; every hop");
    println!("goes through a chaos agent proxy. {traffic}");
    println!("{experiment}");
    println!("Next, in another terminal:");
    for (command, what) in commands {
        println!("  {command:<width$}   {what}");
    }
    println!("{stop}");
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_experiment_is_valid_and_uses_the_demo_proxies() {
        let experiment = Experiment::parse(DEMO_EXPERIMENT, "demo.toml").unwrap();
        let kinds: Vec<&str> =
            experiment.method.iter().flat_map(|s| s.get_ref().all_toxics()).map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds, ["latency", "http_abort"]);
        for step in &experiment.method {
            let proxy = step.get_ref().proxy.as_deref().unwrap();
            assert!(Role::parse(proxy).is_some(), "{proxy} is not a demo proxy");
        }
    }

    #[test]
    fn a_taken_port_is_refused_naming_it_and_its_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let free: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let args = DemoArgs {
            data_dir: PathBuf::from("unused"),
            otlp_grpc: free,
            otlp_http: free,
            http: free,
            agent_api: taken.local_addr().unwrap(),
            duration: None,
            rate: 1.0,
            no_traffic: true,
            no_experiment: true,
            experiment: None,
        };
        let message = check_ports(&args).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("port {port} (127.0.0.1:{port}, --agent-api) is already in use")),
            "{message}"
        );
    }

    #[test]
    fn ready_line_fields_and_local_urls() {
        let line = "seismo ready: otlp-grpc=0.0.0.0:4317 http=127.0.0.1:16686";
        assert_eq!(field(line, "http").unwrap(), "127.0.0.1:16686");
        assert!(field(line, "otlp-http").is_err());
        assert_eq!(local_url(field(line, "otlp-grpc").unwrap()).unwrap(), "http://127.0.0.1:4317");
    }
}
