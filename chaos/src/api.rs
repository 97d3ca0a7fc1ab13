//! The Toxiproxy 2.x REST API (paths, JSON, status codes), plus `/processes`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::model::{ApiError, Toxic};
use crate::proxy::{Proxy, StartError};
use crate::Agent;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_body("empty body, expected JSON"));
    }
    serde_json::from_slice(body).map_err(ApiError::bad_body)
}

fn start_error(e: StartError) -> ApiError {
    match e {
        StartError::InUse(m) => ApiError::new(StatusCode::CONFLICT, m),
        StartError::Bad(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
    }
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
fn check_upstream(upstream: &str) -> Result<(), ApiError> {
    let port_ok = upstream.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if port_ok {
        Ok(())
    } else {
        Err(ApiError::bad_body(format!("upstream must be host:port (or :port for this host), got {upstream:?}")))
    }
}

struct ProxyInput {
    name: String,
    listen: String,
    upstream: String,
    enabled: Option<bool>,
}

fn proxy_input(v: &Value, position: Option<usize>) -> Result<ProxyInput, ApiError> {
    let obj = v.as_object().ok_or_else(|| ApiError::bad_body("expected a JSON object"))?;
    let at = |field: &str| match position {
        Some(i) => format!("{field} at proxy {}", i + 1),
        None => field.to_string(),
    };
    let text = |field: &str| -> Result<String, ApiError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(ApiError::bad_body(format!("{field} must be a string, got {v}"))),
        }
    };
    let name = text("name")?;
    if name.is_empty() {
        return Err(ApiError::missing_field(&at("name")));
    }
    crate::model::check_name("proxy", &name)?;
    let upstream = text("upstream")?;
    if upstream.is_empty() {
        return Err(ApiError::missing_field(&at("upstream")));
    }
    check_upstream(&upstream)?;
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => return Err(ApiError::bad_body(format!("enabled must be a boolean, got {v}"))),
    };
    Ok(ProxyInput { name, listen: text("listen")?, upstream, enabled })
}

async fn proxy_index(State(agent): State<Arc<Agent>>) -> Response {
    let proxies = agent.proxies.lock().unwrap();
    let map: serde_json::Map<String, Value> = proxies.iter().map(|(n, p)| (n.clone(), p.to_json())).collect();
    json_response(StatusCode::OK, Value::Object(map))
}

async fn proxy_create(State(agent): State<Arc<Agent>>, body: Bytes) -> ApiResult {
    let input = proxy_input(&parse_body(&body)?, None)?;
    let _ops = agent.ops.lock().await;
    let mut proxies = agent.proxies.lock().unwrap();
    if proxies.contains_key(&input.name) {
        return Err(ApiError::proxy_exists());
    }
    let mut proxy =
        Proxy::new(input.name.clone(), input.listen, input.upstream, agent.faults.clone(), agent.tasks.clone());
    if input.enabled.unwrap_or(true) {
        proxy.start().map_err(start_error)?;
    }
    let out = proxy.to_json();
    proxies.insert(input.name, proxy);
    Ok(json_response(StatusCode::CREATED, out))
}

/// Creates or replaces proxies from an array; unchanged ones are left alone.
async fn populate(State(agent): State<Arc<Agent>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let items = v.as_array().ok_or_else(|| ApiError::bad_body("expected a JSON array of proxies"))?;
    let inputs = items.iter().enumerate().map(|(i, p)| proxy_input(p, Some(i))).collect::<Result<Vec<_>, _>>()?;
    let _ops = agent.ops.lock().await;
    let mut done = Vec::new();
    for input in inputs {
        let replaced = {
            let mut proxies = agent.proxies.lock().unwrap();
            match proxies.get(&input.name) {
                Some(p) if p.upstream == input.upstream && same_listen(&p.listen, &input.listen) => {
                    done.push(p.to_json());
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
                let e = start_error(e);
                let body = json!({"error": e.message, "status": e.status, "proxies": done});
                return Ok(json_response(StatusCode::from_u16(e.status).unwrap(), body));
            }
        }
        done.push(proxy.to_json());
        agent.proxies.lock().unwrap().insert(input.name, proxy);
    }
    Ok(json_response(StatusCode::CREATED, json!({ "proxies": done })))
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
    let p = proxies.get(&name).ok_or_else(ApiError::proxy_not_found)?;
    Ok(json_response(StatusCode::OK, p.to_json()))
}

/// Changes listen, upstream or enabled. A new address restarts the proxy
/// (its connections drop); `enabled: false` closes the listener.
async fn proxy_update(State(agent): State<Arc<Agent>>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let obj = v.as_object().ok_or_else(|| ApiError::bad_body("expected a JSON object"))?;
    let _ops = agent.ops.lock().await;
    let (listen, upstream, enabled, was_running, stopping) = {
        let mut proxies = agent.proxies.lock().unwrap();
        let p = proxies.get_mut(&name).ok_or_else(ApiError::proxy_not_found)?;
        let field = |k: &str, cur: &str| -> Result<String, ApiError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(cur.to_string()),
                Some(Value::String(s)) if s.is_empty() => Ok(cur.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => Err(ApiError::bad_body(format!("{k} must be a string, got {v}"))),
            }
        };
        let listen = field("listen", &p.listen)?;
        let upstream = field("upstream", &p.upstream)?;
        check_upstream(&upstream)?;
        crate::proxy::resolve_listen(&listen).map_err(ApiError::bad_body)?;
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => p.enabled,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(ApiError::bad_body(format!("enabled must be a boolean, got {v}"))),
        };
        let differs = upstream != p.upstream || !same_listen(&p.listen, &listen);
        let was_running = p.enabled;
        let stopping = (differs || !enabled).then(|| p.stop());
        (listen, upstream, enabled, was_running, stopping)
    };
    if let Some(s) = stopping {
        s.wait().await;
    }
    let mut proxies = agent.proxies.lock().unwrap();
    let p = proxies.get_mut(&name).ok_or_else(ApiError::proxy_not_found)?;
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
            return Err(start_error(e));
        }
    }
    Ok(json_response(StatusCode::OK, p.to_json()))
}

async fn proxy_delete(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> ApiResult {
    let _ops = agent.ops.lock().await;
    let stopping = {
        let mut proxies = agent.proxies.lock().unwrap();
        let mut p = proxies.remove(&name).ok_or_else(ApiError::proxy_not_found)?;
        p.stop()
    };
    stopping.wait().await;
    Ok(no_content())
}

async fn toxic_index(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> ApiResult {
    let proxies = agent.proxies.lock().unwrap();
    let p = proxies.get(&name).ok_or_else(ApiError::proxy_not_found)?;
    Ok(json_response(StatusCode::OK, p.toxics_json()))
}

async fn toxic_create(State(agent): State<Arc<Agent>>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let mut proxies = agent.proxies.lock().unwrap();
    let p = proxies.get_mut(&name).ok_or_else(ApiError::proxy_not_found)?;
    let toxic = Toxic::from_create(&parse_body(&body)?)?;
    if p.toxic(&toxic.name).is_some() {
        return Err(ApiError::toxic_exists());
    }
    let out = toxic.to_json();
    let mut toxics = p.toxics.clone();
    toxics.push(Arc::new(toxic));
    p.set_toxics(toxics);
    Ok(json_response(StatusCode::OK, out))
}

async fn toxic_show(State(agent): State<Arc<Agent>>, Path((name, toxic)): Path<(String, String)>) -> ApiResult {
    let proxies = agent.proxies.lock().unwrap();
    let p = proxies.get(&name).ok_or_else(ApiError::proxy_not_found)?;
    let t = p.toxic(&toxic).ok_or_else(ApiError::toxic_not_found)?;
    Ok(json_response(StatusCode::OK, t.to_json()))
}

async fn toxic_update(
    State(agent): State<Arc<Agent>>,
    Path((name, toxic)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut proxies = agent.proxies.lock().unwrap();
    let p = proxies.get_mut(&name).ok_or_else(ApiError::proxy_not_found)?;
    let current = p.toxic(&toxic).ok_or_else(ApiError::toxic_not_found)?;
    let updated = current.updated(&parse_body(&body)?)?;
    let out = updated.to_json();
    let toxics = p.toxics.iter().map(|t| if t.name == toxic { Arc::new(updated.clone()) } else { t.clone() }).collect();
    p.set_toxics(toxics);
    Ok(json_response(StatusCode::OK, out))
}

async fn toxic_delete(State(agent): State<Arc<Agent>>, Path((name, toxic)): Path<(String, String)>) -> ApiResult {
    let mut proxies = agent.proxies.lock().unwrap();
    let p = proxies.get_mut(&name).ok_or_else(ApiError::proxy_not_found)?;
    p.toxic(&toxic).ok_or_else(ApiError::toxic_not_found)?;
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
            p.start().map_err(start_error)?;
        }
    }
    Ok(no_content())
}

/// The Toxiproxy release whose API this speaks, and ours.
pub const TOXIPROXY_API_VERSION: &str = "2.12.0";

async fn version() -> Response {
    let body = format!("{{\"version\": \"{TOXIPROXY_API_VERSION}\", \"seismo\": \"{}\"}}\n", env!("CARGO_PKG_VERSION"));
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=utf-8"));
    resp
}

/// Toxiproxy's proxy byte counters plus faults applied per toxic.
async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let mut out = String::new();
    let proxies = agent.proxies.lock().unwrap();
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    for (metric, help, pick) in [
        ("toxiproxy_proxy_received_bytes_total", "Bytes the proxy read, per direction.", 0usize),
        ("toxiproxy_proxy_sent_bytes_total", "Bytes the proxy wrote, per direction.", 1),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for p in proxies.values() {
            for (dir, received, sent) in [
                ("upstream", &p.stats.upstream_received, &p.stats.upstream_sent),
                ("downstream", &p.stats.downstream_received, &p.stats.downstream_sent),
            ] {
                let v = if pick == 0 { received } else { sent }.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{metric}{{direction=\"{dir}\",listener=\"{}\",proxy=\"{}\",upstream=\"{}\"}} {v}",
                    esc(&p.listen),
                    esc(&p.name),
                    esc(&p.upstream)
                );
            }
        }
    }
    drop(proxies);
    let _ = writeln!(
        out,
        "# HELP seismo_chaos_faults_total Requests, connections and processes a fault hit.\n# TYPE seismo_chaos_faults_total counter"
    );
    for ((proxy, toxic, kind), n) in agent.faults.counts() {
        let _ = writeln!(
            out,
            "seismo_chaos_faults_total{{proxy=\"{}\",toxic=\"{}\",type=\"{kind}\"}} {n}",
            esc(&proxy),
            esc(&toxic)
        );
    }
    let mut resp = out.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

async fn process_index(State(agent): State<Arc<Agent>>) -> Response {
    json_response(StatusCode::OK, agent.processes.list())
}

async fn process_start(State(agent): State<Arc<Agent>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    Ok(json_response(StatusCode::CREATED, agent.processes.start(&v)?))
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
    let v = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { parse_body(&body)? };
    let mut out = agent.processes.fault(&target, &action, &v, &agent.faults)?;
    // Signals land asynchronously: answer with the state they lead to, when it shows within 500 ms.
    let want_stopped = match action.as_str() {
        "pause" => Some(true),
        "resume" => Some(false),
        _ => None,
    };
    if let (Some(stopped), Some(pid)) = (want_stopped, out["pid"].as_u64()) {
        for _ in 0..100 {
            if (crate::process::state_of(pid as u32) == "stopped") == stopped {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let signal = out["signal"].take();
        out = agent.processes.describe(pid as u32);
        out["signal"] = signal;
    }
    Ok(json_response(StatusCode::OK, out))
}
