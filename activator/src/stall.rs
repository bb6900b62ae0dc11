//! Timing out a peer that stops moving: a request body whose client sends nothing, a response
//! whose client reads nothing.
//!
//! Hand-written because both are a few lines on `http_body::Body` and `AsyncWrite`, and because
//! the timer must cost nothing on the hot path: it is armed only when the peer makes us wait
//! (the inner poll returned `Pending`), so a request whose body and response move at once
//! never touches the timer wheel. A deadline for the whole exchange would not do either: it is
//! the time since the peer last moved that counts, so a long upload or download that keeps
//! moving is never cut.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::proxy::BoxError;

/// How long a peer may keep us waiting, and since when it has.
pub(crate) struct Stall {
    timeout: Duration,
    /// Armed at the first wait after the peer last moved.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The peer moved since the timer was armed: the next wait re-arms it.
    moved: bool,
}

impl Stall {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: None,
            moved: false,
        }
    }

    /// The peer made progress.
    pub(crate) fn moved(&mut self) {
        self.moved = true;
    }

    /// The peer keeps us waiting: `Ready` once it has done so for the whole timeout.
    pub(crate) fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = Instant::now() + self.timeout;
        let sleep = match &mut self.sleep {
            Some(sleep) if self.moved => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            Some(sleep) => sleep,
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.moved = false;
        sleep.as_mut().poll(cx)
    }
}

/// A request body that fails once its client has sent nothing for `timeout`: neither a handler
/// that reads a whole body (the admin API, the broker ingress) nor an instance the ingress
/// streams a body to is held by a client that stalls midway.
pub struct IdleBody<B> {
    inner: B,
    stall: Stall,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            stall: Stall::new(timeout),
        }
    }
}

/// The error of a request body whose client stopped sending.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no part of the request body for {} s ([ingress] body-idle-timeout)", .0.as_secs())]
pub struct BodyIdle(pub Duration);

impl<B> Body for IdleBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.stall.moved();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.stall.poll_waiting(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyIdle(this.stall.timeout).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A writer that fails with `TimedOut` once its peer has taken no byte for `timeout`: a client
/// that stops reading a response (or its side of a websocket) is cut, and the instance slot
/// its request held is freed, instead of being pinned for as long as the client likes.
pub(crate) struct WriteStall<W> {
    inner: W,
    stall: Stall,
}

impl<W> WriteStall<W> {
    pub(crate) fn new(inner: W, timeout: Duration) -> Self {
        Self {
            inner,
            stall: Stall::new(timeout),
        }
    }

    fn track<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.stall.moved();
                Poll::Ready(result)
            }
            Poll::Pending => match self.stall.poll_waiting(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the client read nothing for {} s ([ingress] write-timeout)",
                        self.stall.timeout.as_secs()
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Reads pass through untimed: a client that sends nothing is the idle check's business.
impl<W: AsyncRead + Unpin> AsyncRead for WriteStall<W> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for WriteStall<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_moving_is_never_cut_one_that_stalls_is() {
        let (mut sender, body) = http_body_util::channel::Channel::<bytes::Bytes, BoxError>::new(1);
        let mut body = IdleBody::new(body, Duration::from_secs(5));
        let feeder = tokio::spawn(async move {
            // 20 s of body, a chunk every 4 s: never 5 s without one.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                sender.send_data(bytes::Bytes::from_static(b"x")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(sender);
        });
        let start = Instant::now();
        for _ in 0..5 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("body-idle-timeout"), "{error}");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(25) && waited < Duration::from_secs(26),
            "{waited:?}"
        );
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_whose_peer_reads_nothing_times_out() {
        // A pipe that holds 64 bytes: the reader never reads, so writes block once it is full.
        let (writer, _reader) = tokio::io::duplex(64);
        let mut writer = WriteStall::new(writer, Duration::from_secs(3));
        let start = Instant::now();
        let error = writer.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("write-timeout"), "{error}");
        assert!(start.elapsed() >= Duration::from_secs(3) && start.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut() {
        use tokio::io::AsyncReadExt;
        let (writer, mut reader) = tokio::io::duplex(64);
        let mut writer = WriteStall::new(writer, Duration::from_secs(3));
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut total = 0;
            while total < 1024 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                total += reader.read(&mut buf).await.unwrap();
            }
            total
        });
        writer.write_all(&[0u8; 1024]).await.unwrap();
        assert_eq!(drain.await.unwrap(), 1024);
    }
}
