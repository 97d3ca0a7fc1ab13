//! The four sample services as axum routers. What each does is small but
//! real: the frontend takes an order, checkout reserves stock in inventory
//! and charges payments, inventory keeps counts in memory like a tiny
//! database. None of them fails or slows down on its own: whatever goes
//! wrong comes from the hops the chaos agent sits on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::{global, KeyValue};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::field::Empty;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::{HeaderExtractor, HeaderInjector};
use crate::DemoError;

/// How long a service waits for a downstream before it gives up (a latency
/// fault below this slows the caller down; above it, the call fails).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Stock an item starts with and is refilled to when it runs out.
const RESTOCK: i64 = 50;

/// Which sample service a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Takes orders (`GET /buy?item=`); calls checkout.
    Frontend,
    /// Places an order (`POST /checkout?item=`); calls inventory, then payments.
    Checkout,
    /// Charges an order (`POST /pay?item=&amount=`).
    Payments,
    /// Stock counts (`POST /reserve/{item}`, `GET /stock/{item}`): the database-like dependency.
    Inventory,
}

impl Role {
    /// Every role, in the order they must start: a service's downstreams first.
    pub const START_ORDER: [Role; 4] = [Role::Inventory, Role::Payments, Role::Checkout, Role::Frontend];

    /// The `service.name` it reports, and the name of the agent proxy in front of it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Frontend => "frontend",
            Role::Checkout => "checkout",
            Role::Payments => "payments",
            Role::Inventory => "inventory",
        }
    }

    /// The role called `name`, if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::START_ORDER.into_iter().find(|r| r.name() == name)
    }

    /// The services this one calls.
    pub fn downstreams(self) -> &'static [Role] {
        match self {
            Role::Frontend => &[Role::Checkout],
            Role::Checkout => &[Role::Inventory, Role::Payments],
            Role::Payments | Role::Inventory => &[],
        }
    }
}

/// A service to build: its role and where each of its downstreams is
/// reached (in the demo, the agent proxy in front of it).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Which service.
    pub role: Role,
    /// Base URL (`http://host:port`) of each downstream.
    pub downstreams: BTreeMap<Role, String>,
}

/// The service's router, every route traced and measured.
///
/// # Errors
/// When a downstream the role calls has no URL, or one it does not call has.
pub fn router(config: &ServiceConfig) -> Result<Router, DemoError> {
    let needed = config.role.downstreams();
    for role in needed {
        if !config.downstreams.contains_key(role) {
            return Err(DemoError::Config(format!("{} needs --downstream {}=URL", config.role.name(), role.name())));
        }
    }
    if let Some(extra) = config.downstreams.keys().find(|r| !needed.contains(r)) {
        return Err(DemoError::Config(format!("{} does not call {}", config.role.name(), extra.name())));
    }
    let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?;
    let downstream = |role: Role| Downstream { role, base: config.downstreams[&role].clone(), http: http.clone() };
    let routes = match config.role {
        Role::Frontend => Router::new()
            .route("/buy", get(buy))
            .with_state(Arc::new(Frontend { checkout: downstream(Role::Checkout) })),
        Role::Checkout => Router::new().route("/checkout", post(checkout)).with_state(Arc::new(Checkout {
            inventory: downstream(Role::Inventory),
            payments: downstream(Role::Payments),
        })),
        Role::Payments => Router::new().route("/pay", post(pay)),
        Role::Inventory => Router::new()
            .route("/reserve/{item}", post(reserve))
            .route("/stock/{item}", get(stock))
            .with_state(Arc::new(Inventory::default())),
    };
    let meter = global::meter("seismo-demo");
    let instruments = Arc::new(Instruments {
        duration: meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Time to answer a request")
            .build(),
        requests: meter.u64_counter("demo.requests").with_description("Requests answered, by status").build(),
    });
    Ok(routes
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(instruments, traced)))
}

struct Instruments {
    duration: Histogram<f64>,
    requests: Counter<u64>,
}

/// The server span of every request: a child of the caller's `traceparent`,
/// named by the route, with the status recorded and 5xx marked as an error.
async fn traced(State(instruments): State<Arc<Instruments>>, request: Request, next: Next) -> Response {
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_string(), |m| m.as_str().to_string());
    let method = request.method().to_string();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    // Fails only when the subscriber is not OpenTelemetry's (unit tests): the span stays a root.
    let _ = span.set_parent(parent);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    let attributes = [
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.route", route),
        KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
    ];
    instruments.duration.record(started.elapsed().as_secs_f64(), &attributes);
    instruments.requests.add(1, &attributes);
    response
}

/// A service this one calls, through its base URL.
struct Downstream {
    role: Role,
    base: String,
    http: reqwest::Client,
}

/// Why a downstream call failed: said in the caller's answer and log.
#[derive(Debug)]
struct CallFailed(String);

impl Downstream {
    /// `POST path` in a client span that carries the `traceparent`; a
    /// transport error or a non-2xx answer is an error.
    async fn post(&self, operation: &str, path: &str) -> Result<Value, CallFailed> {
        let callee = self.role.name();
        let span = tracing::info_span!(
            "call",
            otel.name = %format!("POST {callee} {operation}"),
            otel.kind = "client",
            peer.service = callee,
            http.response.status_code = Empty,
            otel.status_code = Empty,
        );
        let call = async {
            let mut headers = HeaderMap::new();
            global::get_text_map_propagator(|p| {
                p.inject_context(&tracing::Span::current().context(), &mut HeaderInjector(&mut headers))
            });
            let url = format!("{}{path}", self.base);
            let response = self
                .http
                .post(&url)
                .headers(headers)
                .send()
                .await
                .map_err(|e| CallFailed(format!("{callee}: {}", without_url(&e))))?;
            let status = response.status();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            let body = response.text().await.map_err(|e| CallFailed(format!("{callee}: {}", without_url(&e))))?;
            if !status.is_success() {
                return Err(CallFailed(format!("{callee} answered {status}: {}", body.trim())));
            }
            serde_json::from_str(&body).map_err(|e| CallFailed(format!("{callee} answered malformed JSON: {e}")))
        };
        let result = call.instrument(span.clone()).await;
        if let Err(CallFailed(why)) = &result {
            span.record("otel.status_code", "error");
            span.in_scope(|| tracing::warn!(error = %why, "call to {callee} failed"));
        }
        result
    }
}

/// reqwest's message without the URL (the proxy's port says nothing to a reader).
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {CALL_TIMEOUT:?}")
    } else if e.is_connect() {
        "connection refused or reset".to_string()
    } else {
        let text = e.to_string();
        match e.url() {
            Some(url) => text.replace(&format!(" ({url})"), ""),
            None => text,
        }
    }
}

fn bad_gateway(CallFailed(why): CallFailed) -> Response {
    (StatusCode::BAD_GATEWAY, Json(json!({ "error": why }))).into_response()
}

#[derive(Deserialize)]
struct ItemQuery {
    item: String,
}

struct Frontend {
    checkout: Downstream,
}

async fn buy(State(front): State<Arc<Frontend>>, Query(q): Query<ItemQuery>) -> Response {
    match front.checkout.post("/checkout", &format!("/checkout?item={}", encode(&q.item))).await {
        Ok(order) => {
            tracing::info!(item = %q.item, "order placed");
            Json(order).into_response()
        }
        Err(e) => {
            tracing::error!(item = %q.item, error = %e.0, "order failed");
            bad_gateway(e)
        }
    }
}

struct Checkout {
    inventory: Downstream,
    payments: Downstream,
}

async fn checkout(State(shop): State<Arc<Checkout>>, Query(q): Query<ItemQuery>) -> Response {
    let item = encode(&q.item);
    let reserved = match shop.inventory.post("/reserve/{item}", &format!("/reserve/{item}")).await {
        Ok(r) => r,
        Err(e) => return bad_gateway(e),
    };
    let amount = price(&q.item);
    let charge = match shop.payments.post("/pay", &format!("/pay?item={item}&amount={amount}")).await {
        Ok(c) => c,
        Err(e) => return bad_gateway(e),
    };
    tracing::info!(item = %q.item, amount, "checked out");
    Json(json!({ "item": q.item, "amount": amount, "left": reserved["left"], "payment": charge["payment"] }))
        .into_response()
}

/// A stable price per item, in cents.
fn price(item: &str) -> u64 {
    500 + item.bytes().map(u64::from).sum::<u64>() % 5000
}

#[derive(Deserialize)]
struct PayQuery {
    item: String,
    amount: u64,
}

async fn pay(Query(q): Query<PayQuery>) -> Response {
    // A payment id derived from the order: deterministic, so replays are visible.
    let id = q.item.bytes().fold(q.amount, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    tracing::info!(item = %q.item, amount = q.amount, "payment authorized");
    Json(json!({ "payment": format!("pay-{id:016x}"), "amount": q.amount })).into_response()
}

/// Stock counts per item, behind one lock like a one-connection database.
#[derive(Default)]
struct Inventory {
    stock: Mutex<BTreeMap<String, i64>>,
}

async fn reserve(State(inventory): State<Arc<Inventory>>, Path(item): Path<String>) -> Response {
    let left = {
        let mut stock = inventory.stock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = stock.entry(item.clone()).or_insert(RESTOCK);
        if *count == 0 {
            *count = RESTOCK;
            tracing::info!(item = %item, "restocked");
        }
        *count -= 1;
        *count
    };
    Json(json!({ "item": item, "left": left })).into_response()
}

async fn stock(State(inventory): State<Arc<Inventory>>, Path(item): Path<String>) -> Response {
    let stock = inventory.stock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(json!({ "item": item, "left": stock.get(&item).copied().unwrap_or(RESTOCK) })).into_response()
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Serves `router` on `listener` until `shutdown` completes.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn listen(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, router, std::future::pending()));
        format!("http://{addr}")
    }

    fn config(role: Role, downstreams: &[(Role, &str)]) -> ServiceConfig {
        ServiceConfig { role, downstreams: downstreams.iter().map(|(r, u)| (*r, u.to_string())).collect() }
    }

    #[tokio::test]
    async fn an_order_goes_through_all_four_services() {
        let inventory = listen(router(&config(Role::Inventory, &[])).unwrap()).await;
        let payments = listen(router(&config(Role::Payments, &[])).unwrap()).await;
        let checkout = listen(
            router(&config(Role::Checkout, &[(Role::Inventory, &inventory), (Role::Payments, &payments)])).unwrap(),
        )
        .await;
        let frontend = listen(router(&config(Role::Frontend, &[(Role::Checkout, &checkout)])).unwrap()).await;
        let order: Value = reqwest::get(format!("{frontend}/buy?item=lamp")).await.unwrap().json().await.unwrap();
        assert_eq!(order["item"], "lamp");
        assert_eq!(order["left"], RESTOCK - 1);
        assert!(order["payment"].as_str().unwrap().starts_with("pay-"));
        let stock: Value = reqwest::get(format!("{inventory}/stock/lamp")).await.unwrap().json().await.unwrap();
        assert_eq!(stock["left"], RESTOCK - 1);
    }

    #[tokio::test]
    async fn a_failing_downstream_is_a_502_naming_it() {
        // Nothing listens on the payments URL: checkout reserves, then cannot charge.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let inventory = listen(router(&config(Role::Inventory, &[])).unwrap()).await;
        let checkout = listen(
            router(&config(
                Role::Checkout,
                &[(Role::Inventory, &inventory), (Role::Payments, &format!("http://{closed}"))],
            ))
            .unwrap(),
        )
        .await;
        let response = reqwest::Client::new().post(format!("{checkout}/checkout?item=lamp")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().starts_with("payments:"), "{body}");
    }

    #[test]
    fn a_missing_or_extra_downstream_is_refused() {
        let e = router(&config(Role::Checkout, &[(Role::Inventory, "http://x")])).unwrap_err();
        assert_eq!(e.to_string(), "checkout needs --downstream payments=URL");
        let e = router(&config(Role::Payments, &[(Role::Inventory, "http://x")])).unwrap_err();
        assert_eq!(e.to_string(), "payments does not call inventory");
    }

    #[test]
    fn roles_start_after_their_downstreams() {
        for (i, role) in Role::START_ORDER.iter().enumerate() {
            for d in role.downstreams() {
                assert!(Role::START_ORDER[..i].contains(d), "{role:?} starts before {d:?}");
            }
            assert_eq!(Role::parse(role.name()), Some(*role));
        }
    }
}
