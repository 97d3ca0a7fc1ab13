//! [`AgentClient`]: the chaos agent's API (default :8474) — Toxiproxy 2.x's
//! proxies, toxics, populate, reset and version, plus seismo's `/processes`.
//!
//! It stands on the same transport as the query [`Client`](crate::Client)
//! (base URL, bearer token, timeout); an error answer, Toxiproxy's
//! `{"error", "status"}`, becomes [`ClientError::Api`] with the agent's
//! message ("proxy not found", "toxic already exists", ...).

use std::collections::BTreeMap;

use reqwest::Method;
use seismo_api::toxiproxy::{
    CommandLine, Populated, Process, ProcessFault, ProcessStart, Proxy, ProxyRequest, SignalSpec, Toxic, ToxicRequest,
    Version,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ClientError;
use crate::transport::Transport;

/// What [`AgentClient::signal_process`] does to a process the agent started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessAction {
    /// Sends a signal: SIGTERM unless one is named.
    Kill,
    /// SIGSTOP: the process freezes until resumed.
    Pause,
    /// SIGCONT: a paused process runs again.
    Resume,
}

impl ProcessAction {
    /// The path segment, `kill`, `pause` or `resume`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessAction::Kill => "kill",
            ProcessAction::Pause => "pause",
            ProcessAction::Resume => "resume",
        }
    }
}

/// A client of the chaos agent's API. Cheap to clone (connections are pooled
/// and shared by clones).
///
/// ```no_run
/// # async fn demo() -> Result<(), seismo_client::ClientError> {
/// use seismo_client::api::toxiproxy::{ProxyRequest, ToxicRequest};
/// let agent = seismo_client::AgentClient::new("http://127.0.0.1:8474")?;
/// agent
///     .create_proxy(&ProxyRequest {
///         name: Some("db".into()),
///         upstream: Some("127.0.0.1:5432".into()),
///         ..ProxyRequest::default()
///     })
///     .await?;
/// let latency = ToxicRequest {
///     kind: Some("latency".into()),
///     attributes: Some([("latency".to_string(), 100.into())].into()),
///     ..ToxicRequest::default()
/// };
/// agent.add_toxic("db", &latency).await?;
/// agent.reset().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AgentClient {
    transport: Transport,
}

impl AgentClient {
    /// A client of the agent API at `base_url` (`http://host:8474`), with a
    /// 30 s timeout and no token.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] when `base_url` is not an absolute
    /// `http(s)` URL without query or fragment.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Ok(AgentClient { transport: Transport::new(base_url)? })
    }

    crate::transport::transport_setters!();

    async fn get<T: DeserializeOwned>(&self, path: &[&str]) -> Result<T, ClientError> {
        let request = self.transport.request(Method::GET, self.transport.url(path));
        self.transport.send(request).await?.json()
    }

    async fn post<T: DeserializeOwned>(&self, path: &[&str], body: &impl Serialize) -> Result<T, ClientError> {
        let request = self.transport.request(Method::POST, self.transport.url(path)).json(body);
        self.transport.send(request).await?.json()
    }

    /// A call answered with an empty 2xx (204 No Content).
    async fn call(&self, method: Method, path: &[&str]) -> Result<(), ClientError> {
        let request = self.transport.request(method, self.transport.url(path));
        self.transport.send(request).await?.empty()
    }

    // ---- Toxiproxy API ----

    /// `GET /version`: the Toxiproxy API level the agent speaks, and seismo's version.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn version(&self) -> Result<Version, ClientError> {
        self.get(&["version"]).await
    }

    /// `GET /proxies`: every proxy, by name.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>, ClientError> {
        self.get(&["proxies"]).await
    }

    /// `GET /proxies/{name}`.
    ///
    /// # Errors
    /// 404 [`ClientError::Api`] for an unknown proxy.
    pub async fn proxy(&self, name: &str) -> Result<Proxy, ClientError> {
        self.get(&["proxies", name]).await
    }

    /// `POST /proxies`: creates a proxy (enabled unless `enabled: false`); the
    /// answer's `listen` is the real address (port 0 becomes the bound port).
    ///
    /// # Errors
    /// 409 when the name is taken, 400 for a missing name or upstream, 500
    /// when the listen address cannot be bound: [`ClientError::Api`].
    pub async fn create_proxy(&self, proxy: &ProxyRequest) -> Result<Proxy, ClientError> {
        self.post(&["proxies"], proxy).await
    }

    /// `POST /proxies/{name}` (Toxiproxy's update): changes the fields given
    /// (listen, upstream, enabled); the others and the toxics stay.
    ///
    /// # Errors
    /// 404 for an unknown proxy, 400 for a bad body: [`ClientError::Api`].
    pub async fn update_proxy(&self, name: &str, update: &ProxyRequest) -> Result<Proxy, ClientError> {
        self.post(&["proxies", name], update).await
    }

    /// `DELETE /proxies/{name}`: stops listening and closes its connections.
    ///
    /// # Errors
    /// 404 for an unknown proxy: [`ClientError::Api`].
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &["proxies", name]).await
    }

    /// `POST /populate`: creates or replaces each proxy; one that is already
    /// as asked is left alone (its connections and toxics stay).
    ///
    /// # Errors
    /// 400 for a bad item; when one proxy fails to start, [`ClientError::Api`]
    /// with its error, and the proxies created before it stay (see
    /// [`AgentClient::proxies`]).
    pub async fn populate(&self, proxies: &[ProxyRequest]) -> Result<Populated, ClientError> {
        self.post(&["populate"], &proxies).await
    }

    /// `GET /proxies/{proxy}/toxics`: upstream toxics first, then downstream.
    ///
    /// # Errors
    /// 404 for an unknown proxy: [`ClientError::Api`].
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ClientError> {
        self.get(&["proxies", proxy, "toxics"]).await
    }

    /// `GET /proxies/{proxy}/toxics/{name}`.
    ///
    /// # Errors
    /// 404 for an unknown proxy or toxic: [`ClientError::Api`].
    pub async fn toxic(&self, proxy: &str, name: &str) -> Result<Toxic, ClientError> {
        self.get(&["proxies", proxy, "toxics", name]).await
    }

    /// `POST /proxies/{proxy}/toxics`: adds a toxic; it acts on connections
    /// at once, open ones included. The answer has every attribute of its type.
    ///
    /// # Errors
    /// 404 for an unknown proxy, 409 when the name is taken on it, 400 for an
    /// unknown type or a bad attribute (named in the message): [`ClientError::Api`].
    pub async fn add_toxic(&self, proxy: &str, toxic: &ToxicRequest) -> Result<Toxic, ClientError> {
        self.post(&["proxies", proxy, "toxics"], toxic).await
    }

    /// `POST /proxies/{proxy}/toxics/{name}`: changes the attributes,
    /// toxicity and experiment given; type, stream and name stay.
    ///
    /// # Errors
    /// 404 for an unknown proxy or toxic, 400 for a bad attribute: [`ClientError::Api`].
    pub async fn update_toxic(&self, proxy: &str, name: &str, update: &ToxicRequest) -> Result<Toxic, ClientError> {
        self.post(&["proxies", proxy, "toxics", name], update).await
    }

    /// `DELETE /proxies/{proxy}/toxics/{name}`: the fault stops at once.
    ///
    /// # Errors
    /// 404 for an unknown proxy or toxic: [`ClientError::Api`].
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &["proxies", proxy, "toxics", name]).await
    }

    /// `POST /reset`: removes every toxic and enables every proxy.
    ///
    /// # Errors
    /// 500 when a disabled proxy cannot listen again: [`ClientError::Api`].
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.call(Method::POST, &["reset"]).await
    }

    // ---- process faults (seismo's extension) ----

    /// `GET /processes`: the processes the agent started (running or exited)
    /// and those it paused.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn processes(&self) -> Result<Vec<Process>, ClientError> {
        self.get(&["processes"]).await
    }

    /// `GET /processes/{target}`: one process, by the name it was started
    /// with or by pid.
    ///
    /// # Errors
    /// 404 for an unknown name: [`ClientError::Api`].
    pub async fn process(&self, target: &str) -> Result<Process, ClientError> {
        self.get(&["processes", target]).await
    }

    /// `POST /processes`: starts `command` (argv) under `name` (the program's
    /// file name when `None`).
    ///
    /// # Errors
    /// 400 for an empty command or one that cannot start, 409 when a process
    /// of that name still runs: [`ClientError::Api`].
    pub async fn start_process(&self, name: Option<&str>, command: &[&str]) -> Result<Process, ClientError> {
        // The agent also takes a command as one string; the client always
        // sends the argv form.
        let body = ProcessStart {
            command: Some(CommandLine::Argv(command.iter().map(|s| s.to_string()).collect())),
            name: name.map(str::to_string),
        };
        self.post(&["processes"], &body).await
    }

    /// `POST /processes/{target}/{action}`: signals a process the agent
    /// started, by name or pid. `signal` (kill only) is a name such as
    /// `SIGKILL` or `KILL`; `None` is SIGTERM. Pause and resume answer once
    /// the process's state shows the change (or after 500 ms).
    ///
    /// # Errors
    /// 404 for an unknown target, 403 for a process the agent did not start,
    /// 410 for one that exited, 400 for an unknown signal: [`ClientError::Api`].
    pub async fn signal_process(
        &self,
        target: &str,
        action: ProcessAction,
        signal: Option<&str>,
    ) -> Result<Process, ClientError> {
        let body = ProcessFault { signal: signal.map(|s| SignalSpec::Name(s.to_string())), experiment: None };
        self.post(&["processes", target, action.as_str()], &body).await
    }

    /// `DELETE /processes/{target}`: forgets a process the agent started,
    /// killing it (SIGKILL, after a SIGCONT if paused) if it still runs.
    ///
    /// # Errors
    /// 404 for an unknown target: [`ClientError::Api`].
    pub async fn remove_process(&self, target: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &["processes", target]).await
    }
}
