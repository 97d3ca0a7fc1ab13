//! Who may use a listener: bearer tokens with roles.
//!
//! A token grants one or more [`Role`]s; each listener requires one role
//! (OTLP receivers `ingest`, the query API `query`, the agent's API `chaos`)
//! and may leave some paths open (`/healthz`). With no tokens configured a
//! listener is open, as before; the binaries warn or refuse when that is
//! unsafe. The check runs on the request head, before routing, so an
//! unauthenticated client never reaches a handler or makes the server read
//! its body.
//!
//! Tokens travel as `Authorization: Bearer <token>` (what OpenTelemetry
//! exporters send with `OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer …"`
//! and the Collector's `bearertokenauth` checks), or as the password of HTTP
//! Basic auth, which Grafana data sources and browsers can send. They are
//! compared in constant time.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use base64::Engine as _;

use crate::server::Protocol;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Send telemetry to the OTLP receivers.
    Ingest,
    /// Read through the query API.
    Query,
    /// Use the chaos agent's API: add faults, start and signal processes.
    Chaos,
}

impl Role {
    /// Every role, in the order they are documented.
    pub const ALL: [Role; 3] = [Role::Ingest, Role::Query, Role::Chaos];

    /// The role's name as flags and config files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Chaos => "chaos",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| AuthConfigError(format!("unknown role {s:?}: expected ingest, query or chaos")))
    }
}

/// A token specification that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthConfigError(String);

/// The configured tokens and the roles each grants. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Arc<Vec<(Vec<u8>, BTreeSet<Role>)>>,
}

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 8;

impl Tokens {
    /// No tokens: every listener is open.
    pub fn none() -> Tokens {
        Tokens::default()
    }

    /// Parses `ROLE:TOKEN` specifications (`--auth-token`, config files, the
    /// environment). `ROLE` may list several roles joined by `+`
    /// (`query+chaos:…`); a token given twice gets the union of its roles.
    ///
    /// # Errors
    /// A specification without `:`, an unknown role, or a token that is
    /// shorter than [`MIN_TOKEN_LEN`] or holds characters a header cannot carry.
    pub fn parse<S: AsRef<str>>(specs: impl IntoIterator<Item = S>) -> Result<Tokens, AuthConfigError> {
        let mut entries: Vec<(Vec<u8>, BTreeSet<Role>)> = Vec::new();
        for spec in specs {
            let spec = spec.as_ref().trim();
            if spec.is_empty() {
                continue;
            }
            let (roles, token) = spec.split_once(':').ok_or_else(|| {
                AuthConfigError(format!("auth token {:?} is not ROLE:TOKEN (e.g. query:…)", redact(spec)))
            })?;
            let roles = roles.split('+').map(Role::from_str).collect::<Result<BTreeSet<_>, _>>()?;
            if token.len() < MIN_TOKEN_LEN {
                return Err(AuthConfigError(format!(
                    "the {} token is {} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 16`)",
                    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("+"),
                    token.len()
                )));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AuthConfigError(
                    "an auth token may hold only visible ASCII characters (no spaces), as HTTP headers carry them"
                        .into(),
                ));
            }
            match entries.iter_mut().find(|(t, _)| t == token.as_bytes()) {
                Some((_, have)) => have.extend(roles),
                None => entries.push((token.as_bytes().to_vec(), roles)),
            }
        }
        Ok(Tokens { entries: Arc::new(entries) })
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether some token grants `role`.
    pub fn grants_any(&self, role: Role) -> bool {
        self.entries.iter().any(|(_, roles)| roles.contains(&role))
    }

    /// The roles `presented` grants; `None` for an unknown token. Every
    /// configured token is compared, byte by byte without early exit, so the
    /// time taken does not tell how much of a guess was right.
    fn roles_of(&self, presented: &[u8]) -> Option<&BTreeSet<Role>> {
        let mut found = None;
        for (token, roles) in self.entries.iter() {
            if constant_time_eq(token, presented) {
                found = Some(roles);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Shows a mistyped specification without printing the secret in it.
fn redact(spec: &str) -> String {
    let shown: String = spec.chars().take(4).collect();
    format!("{shown}…")
}

/// The access rule of one listener.
#[derive(Debug, Clone)]
pub struct Access {
    tokens: Tokens,
    role: Role,
    open_paths: Vec<&'static str>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or a token no one configured: 401 / `UNAUTHENTICATED`.
    Unauthenticated(String),
    /// A valid token without the listener's role: 403 / `PERMISSION_DENIED`.
    Forbidden(String),
}

impl Access {
    /// Everyone may use the listener (no tokens configured).
    pub fn open() -> Access {
        Access { tokens: Tokens::none(), role: Role::Query, open_paths: Vec::new() }
    }

    /// Requests need a token granting `role`; open when `tokens` is empty.
    pub fn require(tokens: Tokens, role: Role) -> Access {
        Access { tokens, role, open_paths: Vec::new() }
    }

    /// Leaves `path` open to everyone (health checks).
    pub fn allow_path(mut self, path: &'static str) -> Access {
        self.open_paths.push(path);
        self
    }

    /// Whether this listener checks tokens at all.
    pub fn is_enforced(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks a request head.
    ///
    /// # Errors
    /// [`Denied`] saying what was missing or wrong (never echoing the token).
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Denied> {
        if self.tokens.is_empty() || self.open_paths.contains(&path) {
            return Ok(());
        }
        let role = self.role;
        let presented = match headers.get(header::AUTHORIZATION) {
            None => {
                return Err(Denied::Unauthenticated(format!(
                    "this endpoint needs a token with the {role} role: send `Authorization: Bearer <token>`"
                )))
            }
            Some(value) => credential(value).ok_or_else(|| {
                Denied::Unauthenticated("the Authorization header is neither `Bearer <token>` nor Basic auth".into())
            })?,
        };
        match self.tokens.roles_of(&presented) {
            None => Err(Denied::Unauthenticated("the token is not valid here".into())),
            Some(roles) if roles.contains(&role) => Ok(()),
            Some(roles) => Err(Denied::Forbidden(format!(
                "the token grants {} but this endpoint needs the {role} role",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("+")
            ))),
        }
    }
}

/// The secret in an `Authorization` value: a bearer token, or a Basic password.
fn credential(value: &HeaderValue) -> Option<Vec<u8>> {
    let text = value.to_str().ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

impl Denied {
    /// The answer in the listener's protocol: a JSON error with 401/403 on
    /// HTTP/1 (with `WWW-Authenticate` on 401), a trailers-only gRPC status
    /// on HTTP/2.
    pub(crate) fn into_response(self, protocol: Protocol) -> Response<Body> {
        let (status, grpc_code, message) = match self {
            Denied::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, 16, m),
            Denied::Forbidden(m) => (StatusCode::FORBIDDEN, 7, m),
        };
        let mut response = match protocol {
            Protocol::Http2 => {
                let mut r = Response::new(Body::empty());
                let headers = r.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                headers.insert("grpc-status", HeaderValue::from(grpc_code));
                if let Ok(v) = HeaderValue::from_str(&percent_encode(&message)) {
                    headers.insert("grpc-message", v);
                }
                r
            }
            Protocol::Http1 => {
                let body = format!("{{\"error\":{},\"status\":{}}}", json_string(&message), status.as_u16());
                let mut r = Response::new(Body::from(body));
                *r.status_mut() = status;
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
        };
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"seismo\""));
        }
        response
    }
}

/// gRPC's `grpc-message` encoding: percent-encode everything outside printable ASCII and `%`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    fn tokens() -> Tokens {
        Tokens::parse(["ingest:ingest-secret-1", "query+chaos:ops-secret-22", "query:ingest-secret-1"]).unwrap()
    }

    #[test]
    fn specs_parse_into_roles_and_repeated_tokens_add_up() {
        let t = tokens();
        assert!(!t.is_empty());
        assert_eq!(
            t.roles_of(b"ingest-secret-1").unwrap().iter().copied().collect::<Vec<_>>(),
            vec![Role::Ingest, Role::Query]
        );
        assert_eq!(t.roles_of(b"ops-secret-22").unwrap().len(), 2);
        assert!(t.roles_of(b"ops-secret-2").is_none());
        assert!(t.grants_any(Role::Chaos));
        assert!(Tokens::parse(["", "  "]).unwrap().is_empty());
    }

    #[test]
    fn bad_specs_say_what_is_wrong_without_printing_the_secret() {
        let e = Tokens::parse(["querysecretvalue"]).unwrap_err().to_string();
        assert!(e.contains("ROLE:TOKEN") && !e.contains("secretvalue"), "{e}");
        let e = Tokens::parse(["admin:0123456789"]).unwrap_err().to_string();
        assert!(e.contains("unknown role \"admin\""), "{e}");
        let e = Tokens::parse(["query:short"]).unwrap_err().to_string();
        assert!(e.contains("at least 8") && !e.contains("short\""), "{e}");
        let e = Tokens::parse(["query:has a space"]).unwrap_err().to_string();
        assert!(e.contains("visible ASCII"), "{e}");
    }

    #[test]
    fn no_token_is_401_a_wrong_role_403_and_open_paths_stay_open() {
        let access = Access::require(tokens(), Role::Query).allow_path("/healthz");
        assert!(access.is_enforced());
        assert!(
            matches!(access.check("/api/services", &headers(None)), Err(Denied::Unauthenticated(m)) if m.contains("query role"))
        );
        assert!(access.check("/healthz", &headers(None)).is_ok());
        assert!(access.check("/api/services", &headers(Some("Bearer ops-secret-22"))).is_ok());
        assert!(access.check("/api/services", &headers(Some("bearer   ingest-secret-1 "))).is_ok());
        assert!(matches!(access.check("/x", &headers(Some("Bearer nope-nope-nope"))), Err(Denied::Unauthenticated(_))));
        assert!(matches!(access.check("/x", &headers(Some("Token ops-secret-22"))), Err(Denied::Unauthenticated(_))));

        let chaos = Access::require(tokens(), Role::Chaos);
        let denied = chaos.check("/proxies", &headers(Some("Bearer ingest-secret-1"))).unwrap_err();
        assert_eq!(
            denied,
            Denied::Forbidden("the token grants ingest+query but this endpoint needs the chaos role".into())
        );
        assert!(chaos.check("/healthz", &headers(None)).is_err(), "only listed paths are open");
    }

    #[test]
    fn basic_auth_carries_the_token_as_its_password() {
        let access = Access::require(tokens(), Role::Query);
        let basic = base64::engine::general_purpose::STANDARD.encode("grafana:ops-secret-22");
        assert!(access.check("/api/v1/query", &headers(Some(&format!("Basic {basic}")))).is_ok());
        let wrong = base64::engine::general_purpose::STANDARD.encode("ops-secret-22:");
        assert!(access.check("/api/v1/query", &headers(Some(&format!("Basic {wrong}")))).is_err());
    }

    #[test]
    fn without_tokens_everything_is_open() {
        let access = Access::require(Tokens::none(), Role::Chaos);
        assert!(!access.is_enforced());
        assert!(access.check("/proxies", &headers(None)).is_ok());
        assert!(Access::open().check("/anything", &headers(Some("Bearer whatever"))).is_ok());
    }

    #[test]
    fn refusals_speak_the_listeners_protocol() {
        let r = Denied::Unauthenticated("needs a \"token\"".into()).into_response(Protocol::Http1);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"seismo\"");
        let r = Denied::Forbidden("wrong role ü".into()).into_response(Protocol::Http2);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "wrong role %C3%BC");
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
