//! The store's one error type; the collector and query crates map it to protocol
//! status codes at their boundary.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input names an id of the wrong length or that is not hex.
    #[error("invalid id: {0}")]
    InvalidId(String),
    /// The request is malformed in a way that makes the whole batch unusable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A search expression (e.g. a log query) does not parse or names
    /// something that cannot be searched.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The write queue is full: the caller should retry later (HTTP 429 /
    /// gRPC RESOURCE_EXHAUSTED).
    #[error("store is busy: {0}")]
    Busy(String),
    /// The store has been shut down or its writer died; nothing more is accepted.
    #[error("store is closed")]
    Closed,
    /// The disk (or the quota) is full: nothing of this request was stored.
    /// Retry later (HTTP 503 / gRPC RESOURCE_EXHAUSTED with a retry delay): the
    /// store keeps answering queries and accepts writes again by itself once
    /// there is room.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// The write-ahead log failed for a reason other than a full disk (EIO, a
    /// failing device): nothing of this request was stored and the store
    /// refuses writes until it is restarted; queries go on.
    #[error("the store refuses writes after the write-ahead log failed: {0}")]
    WalFailed(String),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A segment was written in a format newer than this build reads: the
    /// store does not open (nothing is quarantined or rewritten).
    #[error("written by a newer seismo: {0}")]
    NewerFormat(String),
    /// A segment's bytes fail verification (checksum, footer, row count): the
    /// message names the file. The store quarantines such a segment and
    /// serves the others; this error only reaches a caller when the damage
    /// could not be set aside.
    #[error("damaged segment: {0}")]
    Damaged(String),
}

impl StoreError {
    /// Whether this error is the file system (or a quota) running out of room
    /// (ENOSPC / EDQUOT), also when a Parquet or tantivy error wraps it.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, StoreError::DiskFull(_)) || crate::diskfull::is_out_of_space(self)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
