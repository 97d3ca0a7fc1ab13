//! The Toxiproxy 2.x REST API (paths, JSON, status codes), plus `/processes`.
//! Bodies are `seismo_api::toxiproxy` types; a [`ChaosError`] from the domain
//! becomes Toxiproxy's `{"error", "status"}` answer here and nowhere else.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use seismo_api::toxiproxy::{
    self as wire, ErrorBody, PopulateFailed, Populated, ProcessFault, ProcessStart, ProxyRequest, ToxicRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::agent::Agent;
use crate::error::ChaosError;
use crate::model::Toxic;
use crate::proxy::Proxy;

/// The one place an error becomes an answer: Toxiproxy's `{"error", "status"}`.
impl IntoResponse for ChaosError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.to_string(), status: self.status() };
        (status_code(body.status), axum::Json(body)).into_response()
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

type ApiResult = Result<Response, ChaosError>;

fn json_response(status: StatusCode, v: impl Serialize) -> Response {
    (status, axum::Json(v)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A JSON body of type `T`; an empty body is an error of its own.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ChaosError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ChaosError::bad_body("empty body, expected JSON"));
    }
    serde_json::from_slice(body).map_err(ChaosError::bad_body)
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/proxies", get(proxy_index).post(proxy_create))
        .route("/populate", post(populate))
        .route("/proxies/{proxy}", get(proxy_show).post(proxy_update).patch(proxy_update).delete(proxy_delete))
        .route("/proxies/{proxy}/toxics", get(toxic_index).post(toxic_create))
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(toxic_show).post(toxic_update).patch(toxic_update).delete(toxic_delete),
        )
        .route("/reset", post(reset))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/processes", get(process_index).post(process_start))
        .route("/processes/{target}", get(process_show).delete(process_delete))
        .route("/processes/{target}/{action}", post(process_fault))
        .layer(middleware::from_fn(stop_browsers))
        .with_state(agent)
}

/// Like Toxiproxy: browsers may not drive the agent (a web page could otherwise
/// reach it on localhost).
async fn stop_browsers(req: Request, next: Next) -> Response {
    let ua = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ua.starts_with("Mozilla/") {
        return (StatusCode::FORBIDDEN, "User agent not allowed\n").into_response();
    }
    next.run(req).await
}

/// An upstream is `host:port`, or `:port` for this host (as Go dials it).
fn check_upstream(upstream: &str) -> Result<(), ChaosError> {
    let port_ok = upstream.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if port_ok {
        Ok(())
    } else {
        Err(ChaosError::bad_body(format!("upstream must be host:port (or :port for this host), got {upstream:?}")))
    }
}

/// A create (or populate) body with its required fields checked.
struct ProxyInput {
    name: String,
    listen: String,
    upstream: String,
    enabled: Option<bool>,
}

/// Checks a create body; `position` names the item of a populate array.
fn proxy_input(req: ProxyRequest, position: Option<usize>) -> Result<ProxyInput, ChaosError> {
    let at = |field: &str| match position {
        Some(i) => format!("{field} at proxy {}", i + 1),
        None => field.to_string(),
    };
    let name = req.name.unwrap_or_default();
    if name.is_empty() {
        return Err(ChaosError::MissingField(at("name")));
    }
    crate::model::check_name("proxy", &name)?;
    let upstream = req.upstream.unwrap_or_default();
    if upstream.is_empty() {
        return Err(ChaosError::MissingField(at("upstream")));
    }
    check_upstream(&upstream)?;
    Ok(ProxyInput { name, listen: req.listen.unwrap_or_default(), upstream, enabled: req.enabled })
}

async fn proxy_index(State(agent): State<Arc<Agent>>) -> Response {
    let proxies = agent.proxies.lock().unwrap();
    let map: std::collections::BTreeMap<&str, wire::Proxy> =
        proxies.iter().map(|(n, p)| (n.as_str(), p.to_wire())).collect();
    json_response(StatusCode::OK, map)
}

async fn proxy_create(State(agent): State<Arc<Agent>>, body: Bytes) -> ApiResult {
    let input = proxy_input(parse_body(&body)?, None)?;
    let _ops = agent.ops.lock().await;
    let mut proxies = agent.proxies.lock().unwrap();
    if proxies.contains_key(&input.name) {
        return Err(ChaosError::ProxyExists);
    }
    let mut proxy =
        Proxy::new(input.name.clone(), input.listen, input.upstream, agent.faults.clone(), agent.tasks.clone());
    if input.enabled.unwrap_or(true) {
        proxy.start()?;
    }
    let out = proxy.to_wire();
    proxies.insert(input.name, proxy);
    Ok(json_response(StatusCode::CREATED, out))
}

/// Creates or replaces proxies from an array; unchanged ones are left alone.
async fn populate(State(agent): State<Arc<Agent>>, body: Bytes) -> ApiResult {
    let items: Vec<ProxyRequest> = parse_body(&body)?;
    let inputs = items.into_iter().enumerate().map(|(i, p)| proxy_input(p, Some(i))).collect::<Result<Vec<_>, _>>()?;
    let _ops = agent.ops.lock().await;
    let mut done = Vec::new();
    for input in inputs {
        let replaced = {
            let mut proxies = agent.proxies.lock().unwrap();
            match proxies.get(&input.name) {
                Some(p) if p.upstream == input.upstream && same_listen(&p.listen, &input.listen) => {
                    done.push(p.to_wire());
                    continue;
                }
                Some(_) => proxies.remove(&input.name).map(|mut p| p.stop()),
                None => None,
            }
        };
        if let Some(stopping) = replaced {
            stopping.wait().await;
        }
        let mut proxy =
            Proxy::new(input.name.clone(), input.listen, input.upstream, agent.faults.clone(), agent.tasks.clone());
        if input.enabled.unwrap_or(true) {
            if let Err(e) = proxy.start() {
                let body = PopulateFailed { error: e.to_string(), proxies: done, status: e.status() };
                return Ok(json_response(status_code(body.status), body));
            }
        }
        done.push(proxy.to_wire());
        agent.proxies.lock().unwrap().insert(input.name, proxy);
    }
    Ok(json_response(StatusCode::CREATED, Populated { proxies: done }))
}

/// Whether a requested listen address is what a running proxy already has.
fn same_listen(current: &str, requested: &str) -> bool {
    match (crate::proxy::resolve_listen(current), crate::proxy::resolve_listen(requested)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

async fn proxy_show(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> ApiResult {
    let proxies = agent.proxies.lock().unwrap();
    let p = proxies.get(&name).ok_or(ChaosError::ProxyNotFound)?;
    Ok(json_response(StatusCode::OK, p.to_wire()))
}

/// Changes listen, upstream or enabled. A new address restarts the proxy
/// (its connections drop); `enabled: false` closes the listener.
async fn proxy_update(State(agent): State<Arc<Agent>>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let req: ProxyRequest = parse_body(&body)?;
    let _ops = agent.ops.lock().await;
    let (listen, upstream, enabled, was_running, stopping) = {
        let mut proxies = agent.proxies.lock().unwrap();
        let p = proxies.get_mut(&name).ok_or(ChaosError::ProxyNotFound)?;
        // A missing or empty field keeps its current value.
        let field = |given: Option<String>, current: &str| {
            given.filter(|s| !s.is_empty()).unwrap_or_else(|| current.to_string())
        };
        let listen = field(req.listen, &p.listen);
        let upstream = field(req.upstream, &p.upstream);
        check_upstream(&upstream)?;
        crate::proxy::resolve_listen(&listen).map_err(ChaosError::bad_body)?;
        let enabled = req.enabled.unwrap_or(p.enabled);
        let differs = upstream != p.upstream || !same_listen(&p.listen, &listen);
        let was_running = p.enabled;
        let stopping = (differs || !enabled).then(|| p.stop());
        (listen, upstream, enabled, was_running, stopping)
    };
    if let Some(s) = stopping {
        s.wait().await;
    }
    let mut proxies = agent.proxies.lock().unwrap();
    let p = proxies.get_mut(&name).ok_or(ChaosError::ProxyNotFound)?;
    let old = (p.listen.clone(), p.upstream.clone());
    p.listen = listen;
    p.upstream = upstream;
    if enabled {
        if let Err(e) = p.start() {
            // Put back what was running; the answer says why the change failed.
            p.listen = old.0;
            p.upstream = old.1;
            if was_running {
                let _ = p.start();
            }
            return Err(e);
        }
    }
    Ok(json_response(StatusCode::OK, p.to_wire()))
}

async fn proxy_delete(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> ApiResult {
    let _ops = agent.ops.lock().await;
    let stopping = {
        let mut proxies = agent.proxies.lock().unwrap();
        let mut p = proxies.remove(&name).ok_or(ChaosError::ProxyNotFound)?;
        p.stop()
    };
    stopping.wait().await;
    Ok(no_content())
}

async fn toxic_index(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> ApiResult {
    let proxies = agent.proxies.lock().unwrap();
    let p = proxies.get(&name).ok_or(ChaosError::ProxyNotFound)?;
    Ok(json_response(StatusCode::OK, p.toxics_wire()))
}

async fn toxic_create(State(agent): State<Arc<Agent>>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let mut proxies = agent.proxies.lock().unwrap();
    let p = proxies.get_mut(&name).ok_or(ChaosError::ProxyNotFound)?;
    let toxic = Toxic::from_create(parse_body::<ToxicRequest>(&body)?)?;
    if p.toxic(&toxic.name).is_some() {
        return Err(ChaosError::ToxicExists);
    }
    let out = toxic.to_wire();
    let mut toxics = p.toxics.clone();
    toxics.push(Arc::new(toxic));
    p.set_toxics(toxics);
    Ok(json_response(StatusCode::OK, out))
}

async fn toxic_show(State(agent): State<Arc<Agent>>, Path((name, toxic)): Path<(String, String)>) -> ApiResult {
    let proxies = agent.proxies.lock().unwrap();
    let p = proxies.get(&name).ok_or(ChaosError::ProxyNotFound)?;
    let t = p.toxic(&toxic).ok_or(ChaosError::ToxicNotFound)?;
    Ok(json_response(StatusCode::OK, t.to_wire()))
}

async fn toxic_update(
    State(agent): State<Arc<Agent>>,
    Path((name, toxic)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut proxies = agent.proxies.lock().unwrap();
    let p = proxies.get_mut(&name).ok_or(ChaosError::ProxyNotFound)?;
    let current = p.toxic(&toxic).ok_or(ChaosError::ToxicNotFound)?;
    let updated = current.updated(parse_body::<ToxicRequest>(&body)?)?;
    let out = updated.to_wire();
    let toxics = p.toxics.iter().map(|t| if t.name == toxic { Arc::new(updated.clone()) } else { t.clone() }).collect();
    p.set_toxics(toxics);
    Ok(json_response(StatusCode::OK, out))
}

async fn toxic_delete(State(agent): State<Arc<Agent>>, Path((name, toxic)): Path<(String, String)>) -> ApiResult {
    let mut proxies = agent.proxies.lock().unwrap();
    let p = proxies.get_mut(&name).ok_or(ChaosError::ProxyNotFound)?;
    p.toxic(&toxic).ok_or(ChaosError::ToxicNotFound)?;
    let toxics = p.toxics.iter().filter(|t| t.name != toxic).cloned().collect();
    p.set_toxics(toxics);
    Ok(no_content())
}

/// Enables every proxy and removes every toxic.
async fn reset(State(agent): State<Arc<Agent>>) -> ApiResult {
    let _ops = agent.ops.lock().await;
    let mut proxies = agent.proxies.lock().unwrap();
    for p in proxies.values_mut() {
        p.set_toxics(Vec::new());
        if !p.enabled {
            p.start()?;
        }
    }
    Ok(no_content())
}

/// The Toxiproxy release whose API this speaks, and ours (a JSON line).
async fn version() -> Response {
    let version = wire::Version {
        version: wire::TOXIPROXY_API_VERSION.to_string(),
        seismo: Some(env!("CARGO_PKG_VERSION").to_string()),
    };
    let body = serde_json::to_string(&version).unwrap_or_default() + "\n";
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=utf-8"));
    resp
}

/// Toxiproxy's proxy byte counters plus faults applied per toxic.
async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let mut resp = crate::metrics::render(&agent).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    resp
}

async fn process_index(State(agent): State<Arc<Agent>>) -> Response {
    json_response(StatusCode::OK, agent.processes.list())
}

async fn process_start(State(agent): State<Arc<Agent>>, body: Bytes) -> ApiResult {
    let start: ProcessStart = parse_body(&body)?;
    Ok(json_response(StatusCode::CREATED, agent.processes.start(&start)?))
}

async fn process_show(State(agent): State<Arc<Agent>>, Path(target): Path<String>) -> ApiResult {
    let pid = agent.processes.resolve_any(&target)?;
    Ok(json_response(StatusCode::OK, agent.processes.describe(pid)))
}

async fn process_delete(State(agent): State<Arc<Agent>>, Path(target): Path<String>) -> ApiResult {
    agent.processes.remove(&target)?;
    Ok(no_content())
}

async fn process_fault(
    State(agent): State<Arc<Agent>>,
    Path((target, action)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let fault: ProcessFault =
        if body.iter().all(u8::is_ascii_whitespace) { ProcessFault::default() } else { parse_body(&body)? };
    let mut out = agent.processes.fault(&target, &action, &fault, &agent.faults)?;
    // Signals land asynchronously: answer with the state they lead to, when it shows within 500 ms.
    let want_stopped = match action.as_str() {
        "pause" => Some(true),
        "resume" => Some(false),
        _ => None,
    };
    if let Some(stopped) = want_stopped {
        for _ in 0..100 {
            if (crate::process::state_of(out.pid) == "stopped") == stopped {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let signal = out.signal.take();
        out = agent.processes.describe(out.pid);
        out.signal = signal;
    }
    Ok(json_response(StatusCode::OK, out))
}
