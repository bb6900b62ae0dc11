//! Counts the requests in flight, so the drain message can say how many it waits for.
//!
//! A request counts from the moment it reaches the service until its response body is finished
//! or dropped: a streamed answer (`/echo`, `/bytes`, `/stream`) is in flight while it streams.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use hyper::body::{Body, Frame, SizeHint};

/// The number of requests in flight, shared by every connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more request until the returned guard is dropped.
    pub(crate) fn enter(&self) -> Guard {
        self.0.fetch_add(1, Ordering::Relaxed);
        Guard(self.0.clone())
    }

    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One request in flight; dropping it ends the request's count.
#[derive(Debug)]
pub(crate) struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds its request's [`Guard`] until hyper is done with it.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    body: B,
    _guard: Guard,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, guard: Guard) -> Self {
        Self { body, _guard: guard }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
