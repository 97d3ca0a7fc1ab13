//! What every API client of this crate shares: the base URL, the bearer
//! token, the timeout, sending a request and turning the answer into a typed
//! value or a [`ClientError`] that carries the server's message.
//!
//! The query API client and the chaos agent client both stand on it, each
//! with its own base URL.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Url};
use seismo_api::prometheus::PromError;
use seismo_api::v3::ErrorBody;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::ClientError;

/// Default request timeout: long enough for a heavy PromQL range query,
/// short enough that a hung server does not hang its caller for good.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest server message kept from a body that is not a known error shape.
const MAX_RAW_MESSAGE: usize = 1024;

/// A base URL plus how to call it.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    timeout: Duration,
}

impl Transport {
    pub(crate) fn new(base_url: &str) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl { url: base_url.to_string(), reason };
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!("scheme {:?} is not http or https", base.scheme())));
        }
        if base.cannot_be_a_base() || base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("must be a plain http(s) URL without query or fragment".into()));
        }
        Ok(Transport { http: reqwest::Client::new(), base, token: None, timeout: DEFAULT_TIMEOUT })
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Trusts the PEM CA certificate(s) in `pem` besides the public roots, and
    /// presents `identity` (a PEM certificate chain followed by its key) when
    /// the server asks for a client certificate.
    pub(crate) fn set_tls(&mut self, ca_pem: Option<&[u8]>, identity_pem: Option<&[u8]>) -> Result<(), ClientError> {
        let tls = |reason: String| ClientError::Tls { reason };
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| tls(format!("CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(tls("the CA file holds no PEM certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = identity_pem {
            builder = builder
                .identity(reqwest::Identity::from_pem(pem).map_err(|e| tls(format!("client certificate: {e}")))?);
        }
        self.http = builder.build().map_err(|e| tls(e.to_string()))?;
        Ok(())
    }

    pub(crate) fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// The base URL with `segments` appended, each percent-encoded (a service
    /// name may hold `/`).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked in new: can be a base").pop_if_empty().extend(segments);
        url
    }

    /// A request to `url` with the token and the timeout.
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url).timeout(self.timeout);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` and reads the whole answer, whatever its status.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when the timeout passes before the whole
    /// answer is read; [`ClientError::Http`] when sending or reading fails.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Answer, ClientError> {
        let request = request.build().map_err(|e| ClientError::Http { url: self.base.to_string(), source: e })?;
        let url = request.url().to_string();
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                ClientError::Timeout { url: url.clone(), timeout: self.timeout }
            } else {
                ClientError::Http { url: url.clone(), source: e }
            }
        };
        let response = self.http.execute(request).await.map_err(failed)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(failed)?.to_vec();
        Ok(Answer { url, status, body })
    }
}

/// A whole answer.
pub(crate) struct Answer {
    pub(crate) url: String,
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// A 2xx answer decoded as `T`; any other status as [`ClientError::Api`].
    pub(crate) fn json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        if !(200..300).contains(&self.status) {
            return Err(api_error(self.url, self.status, &self.body));
        }
        decode(self.url, &self.body)
    }

    /// A 2xx answer whose body, if any, means nothing (204 No Content); any
    /// other status as [`ClientError::Api`].
    pub(crate) fn empty(self) -> Result<(), ClientError> {
        if !(200..300).contains(&self.status) {
            return Err(api_error(self.url, self.status, &self.body));
        }
        Ok(())
    }
}

/// `body` as `T`, or [`ClientError::Decode`].
pub(crate) fn decode<T: DeserializeOwned>(url: String, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|source| ClientError::Decode { url, source })
}

/// The error answer `body` with `status`, its message taken from whichever
/// error shape it is in.
pub(crate) fn api_error(url: String, status: u16, body: &[u8]) -> ClientError {
    let (message, error_type) = error_message(body);
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        match text.char_indices().nth(MAX_RAW_MESSAGE) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None if text.is_empty() => "(empty body)".to_string(),
            None => text.to_string(),
        }
    });
    ClientError::Api { url, status, message, error_type }
}

/// The message of a Jaeger, api_v3, Prometheus or Toxiproxy error body.
fn error_message(body: &[u8]) -> (Option<String>, Option<seismo_api::prometheus::ErrorType>) {
    if let Ok(jaeger) = serde_json::from_slice::<seismo_api::Response<IgnoredAny>>(body) {
        if let Some(first) = jaeger.errors.as_ref().and_then(|e| e.first()) {
            return (Some(first.msg.clone()), None);
        }
    }
    if let Ok(v3) = serde_json::from_slice::<ErrorBody>(body) {
        return (Some(v3.error.message), None);
    }
    // Toxiproxy's `{"error": "...", "status": 404}` (also `POST /populate`'s
    // failure, which adds the proxies made before it). Before Prometheus':
    // its `status` is the string "error", so neither shape takes the other's.
    if let Ok(toxiproxy) = serde_json::from_slice::<seismo_api::toxiproxy::ErrorBody>(body) {
        return (Some(toxiproxy.error), None);
    }
    if let Ok(prom) = serde_json::from_slice::<PromError>(body) {
        if let Some(message) = prom.error {
            return (Some(message), prom.error_type);
        }
    }
    (None, None)
}

/// The builder methods both clients share; each client wraps one [`Transport`]
/// in a field named `transport`.
macro_rules! transport_setters {
    () => {
        /// Every request gives up after `timeout` (connecting, sending and reading
        /// the whole answer) with [`ClientError::Timeout`](crate::ClientError::Timeout).
        pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.transport.set_timeout(timeout);
            self
        }

        /// Every request carries `Authorization: Bearer <token>`.
        pub fn with_token(mut self, token: impl Into<String>) -> Self {
            self.transport.set_token(token.into());
            self
        }

        /// TLS toward a server whose certificate a private CA signed: trusts the
        /// PEM certificate(s) `ca_pem` besides the public roots, and presents
        /// `identity_pem` (certificate chain, then private key, PEM) to a server
        /// that requires client certificates.
        ///
        /// # Errors
        /// [`ClientError::Tls`](crate::ClientError::Tls) when either PEM cannot be used.
        pub fn with_tls(
            mut self,
            ca_pem: Option<&[u8]>,
            identity_pem: Option<&[u8]>,
        ) -> Result<Self, crate::ClientError> {
            self.transport.set_tls(ca_pem, identity_pem)?;
            Ok(self)
        }

        /// The base URL.
        pub fn base_url(&self) -> &str {
            self.transport.base().as_str()
        }
    };
}
pub(crate) use transport_setters;

#[cfg(test)]
mod tests {
    use super::*;
    use seismo_api::prometheus::ErrorType;

    fn api(status: u16, body: &str) -> ClientError {
        api_error("http://x/y".into(), status, body.as_bytes())
    }

    #[test]
    fn messages_come_from_every_error_shape() {
        let jaeger = api(
            400,
            r#"{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":400,"msg":"unable to parse param 'limit'"}]}"#,
        );
        assert_eq!(jaeger.server_message(), Some("unable to parse param 'limit'"));
        assert!(jaeger.is_bad_request());
        let v3 = api(404, r#"{"error":{"httpCode":404,"message":"No traces found"}}"#);
        assert_eq!((v3.server_message(), v3.is_not_found()), (Some("No traces found"), true));
        let prom = api(422, r#"{"status":"error","errorType":"execution","error":"multiple matches"}"#);
        assert!(
            matches!(&prom, ClientError::Api { error_type: Some(ErrorType::Execution), message, .. } if message == "multiple matches")
        );
        let toxiproxy = api(409, r#"{"error":"proxy already exists","status":409}"#);
        assert_eq!((toxiproxy.server_message(), toxiproxy.status()), (Some("proxy already exists"), Some(409)));
        let populate = api(500, r#"{"error":"listen tcp 1.2.3.4:1: bind failed","proxies":[],"status":500}"#);
        assert_eq!(populate.server_message(), Some("listen tcp 1.2.3.4:1: bind failed"));
        let plain = api(502, "Bad Gateway\n");
        assert_eq!(plain.server_message(), Some("Bad Gateway"));
        assert_eq!(api(500, "").server_message(), Some("(empty body)"));
        let long = api(500, &"x".repeat(5000));
        assert_eq!(long.server_message().unwrap().chars().count(), MAX_RAW_MESSAGE + 1);
        assert_eq!(jaeger.to_string(), "http://x/y answered 400: unable to parse param 'limit'");
    }

    #[test]
    fn base_urls_are_checked_and_segments_encoded() {
        let t = Transport::new("http://127.0.0.1:16686/").unwrap();
        assert_eq!(
            t.url(&["api", "services", "a/b c", "operations"]).as_str(),
            "http://127.0.0.1:16686/api/services/a%2Fb%20c/operations"
        );
        let prefixed = Transport::new("http://host/seismo").unwrap();
        assert_eq!(prefixed.url(&["api", "services"]).as_str(), "http://host/seismo/api/services");
        for bad in ["127.0.0.1:16686", "ftp://host", "http://host/?q=1", "not a url"] {
            assert!(matches!(Transport::new(bad), Err(ClientError::InvalidUrl { .. })), "{bad}");
        }
    }
}
