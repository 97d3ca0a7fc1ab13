//! The query API client every timed query goes through.

use std::time::Duration;

use seismo_client::Client;

use crate::LoadgenError;

/// How long one timed query may take before a benchmark gives up on it:
/// generous, because a benchmark measures slow queries too.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// A client of the query API at `url` with [`QUERY_TIMEOUT`].
pub(crate) fn client(url: &str) -> Result<Client, LoadgenError> {
    Ok(Client::new(url).map_err(LoadgenError::client("the query URL"))?.with_timeout(QUERY_TIMEOUT))
}
