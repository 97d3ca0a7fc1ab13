//! `seismo demo-service NAME` (hidden): one of the demo's sample services as
//! its own process, with its own listener and OpenTelemetry pipeline.
//! `seismo demo` starts four of them; a user never needs to.

use anyhow::Context;
use clap::Args;
use seismo_demo::{Role, ServiceConfig, Telemetry};

#[derive(Args)]
pub(crate) struct DemoServiceArgs {
    /// frontend, checkout, payments or inventory
    name: String,
    /// Listen address (port 0: any free port, said on the ready line)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// OTLP/gRPC endpoint of the collector, e.g. http://127.0.0.1:4317
    #[arg(long)]
    otlp_endpoint: String,
    /// Where a downstream is reached, NAME=URL (in the demo: its agent proxy). Repeatable
    #[arg(long, value_name = "NAME=URL")]
    downstream: Vec<String>,
}

/// Runs the service until SIGINT or SIGTERM, then flushes its telemetry.
/// Prints `seismo demo-service ready: name=NAME listen=ADDR` once it accepts.
pub(crate) async fn run(args: DemoServiceArgs) -> anyhow::Result<()> {
    let role = Role::parse(&args.name)
        .with_context(|| format!("unknown service {:?}: frontend, checkout, payments or inventory", args.name))?;
    let mut downstreams = std::collections::BTreeMap::new();
    for spec in &args.downstream {
        let (name, url) = spec.split_once('=').with_context(|| format!("--downstream {spec:?}: expected NAME=URL"))?;
        let callee = Role::parse(name).with_context(|| format!("--downstream {spec:?}: unknown service {name:?}"))?;
        anyhow::ensure!(downstreams.insert(callee, url.to_string()).is_none(), "--downstream {name} given twice");
    }
    let telemetry = Telemetry::install(role.name(), &args.otlp_endpoint)?;
    let router = seismo_demo::service::router(&ServiceConfig { role, downstreams })?;
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("--listen {}", args.listen))?;
    println!("seismo demo-service ready: name={} listen={}", role.name(), listener.local_addr()?);
    let served = seismo_demo::service::serve(listener, router, crate::serve::shutdown_signal()).await;
    // The last spans and log records leave before the process does.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    Ok(served?)
}
