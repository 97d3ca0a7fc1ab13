//! A request body with a deadline: a client that announces a body and then sends it
//! slowly (or not at all) holds a connection, a task and buffers; past the deadline the
//! body fails with [`BodyTimedOut`], which handlers answer with 408.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{sleep, Sleep};

/// The error a [`TimeoutBody`] yields when its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

impl BodyTimedOut {
    /// Finds a body timeout anywhere in `error`'s source chain (handlers see it wrapped
    /// in their framework's error type).
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<BodyTimedOut> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(timed_out) = e.downcast_ref::<BodyTimedOut>() {
                return Some(*timed_out);
            }
            current = e.source();
        }
        None
    }
}

/// Wraps a body so that it must be complete within `timeout` of the request's start.
pub struct TimeoutBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    done: bool,
}

impl<B> TimeoutBody<B> {
    /// Starts the clock now.
    pub fn new(inner: B, timeout: Duration) -> Self {
        TimeoutBody { inner, timeout, deadline: Box::pin(sleep(timeout)), done: false }
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// Sends one frame, then never another (a client that stops mid-body).
    struct Stall {
        sent: bool,
    }

    impl Body for Stall {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if std::mem::replace(&mut self.sent, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
            }
        }
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_with_the_timeout() {
        let mut body = TimeoutBody::new(Stall { sent: false }, Duration::from_millis(100));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"first"));
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(BodyTimedOut::find(err.as_ref()), Some(BodyTimedOut(Duration::from_millis(100))));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_prompt_body_passes_untouched() {
        let body = TimeoutBody::new(Full::new(Bytes::from_static(b"whole")), Duration::from_secs(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), Bytes::from_static(b"whole"));
    }
}
