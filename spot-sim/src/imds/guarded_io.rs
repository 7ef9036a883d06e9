//! A responder connection's socket as hyper sees it: it records when bytes last moved in
//! either direction (so a client that pipelines requests and never reads its answers counts
//! as idle, and is closed like any idle one), and it gives the answers hyper writes on its own
//! (400 and 431 for requests it cannot parse) the `Server: EC2ws` header every answer of the
//! real service carries.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{ready, Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::lock::lock;

pub(super) struct GuardedIo<T> {
    inner: T,
    last_progress: Arc<Mutex<Instant>>,
    /// An answer with the header added, still to be written.
    pending: Vec<u8>,
    pending_at: usize,
}

impl<T> GuardedIo<T> {
    pub(super) fn new(inner: T, last_progress: Arc<Mutex<Instant>>) -> Self {
        Self {
            inner,
            last_progress,
            pending: Vec::new(),
            pending_at: 0,
        }
    }

    fn touch(&self) {
        *lock(&self.last_progress) = Instant::now();
    }
}

/// `head` with `Server: EC2ws` after its status line, when `buf` starts a response head that
/// has no `Server` header (only hyper's own answers lack one: the router sets it on all ours).
fn with_server_header(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.1 ") && !buf.starts_with(b"HTTP/1.0 ") {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..head_end + 2];
    let has_server = head
        .split(|&b| b == b'\n')
        .any(|line| line.len() >= 7 && line[..7].eq_ignore_ascii_case(b"server:"));
    if has_server {
        return None;
    }
    let status_end = buf.windows(2).position(|w| w == b"\r\n")? + 2;
    let mut out = Vec::with_capacity(buf.len() + 15);
    out.extend_from_slice(&buf[..status_end]);
    out.extend_from_slice(b"Server: EC2ws\r\n");
    out.extend_from_slice(&buf[status_end..]);
    Some(out)
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_at < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_at += n;
            self.touch();
        }
        self.pending.clear();
        self.pending_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if let Some(fixed) = with_server_header(buf) {
            // Taken whole: written from `pending` now and on the next flush.
            self.pending = fixed;
            if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if n > 0 {
            self.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_head_without_a_server_header_gets_one() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nDate: x\r\n\r\n";
        assert_eq!(
            with_server_header(hyper_400).unwrap(),
            b"HTTP/1.1 400 Bad Request\r\nServer: EC2ws\r\nContent-Length: 0\r\nDate: x\r\n\r\n"
        );
        assert!(with_server_header(b"HTTP/1.1 200 OK\r\nServer: EC2ws\r\n\r\nbody").is_none());
        assert!(with_server_header(b"HTTP/1.1 200 OK\r\nserver: EC2ws\r\n\r\n").is_none());
        assert!(with_server_header(b"body bytes HTTP/1.1 400\r\n\r\n").is_none());
        // A body that mentions a server header does not count as having one.
        assert!(with_server_header(b"HTTP/1.1 431 X\r\n\r\nServer: no").is_some());
    }
}
