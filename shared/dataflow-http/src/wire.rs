//! Errors that hyper answers itself, before a request reaches the router (a request line over
//! 64 KiB, headers over its buffer, a malformed request), come with an empty body. The local
//! server rewrites exactly those answers into the JSON error shape, so every error a client can
//! meet has one shape. (Inside Lambda, API Gateway answers such requests itself.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A listener whose connections carry [`JsonErrors`].
pub struct JsonErrorListener(pub tokio::net::TcpListener);

impl axum::serve::Listener for JsonErrorListener {
    type Io = JsonErrors<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (JsonErrors::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that replaces hyper's own bodiless error answers with JSON ones.
pub struct JsonErrors<S> {
    inner: S,
    /// A rewritten answer still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonErrors<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// The JSON answer for a head hyper wrote itself, if `buf` starts with one: `(replacement,
/// bytes of buf it replaces)`. The router never answers an error without a body, so only
/// hyper's answers match.
fn rewrite(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = std::str::from_utf8(rest.get(..3)?).ok()?;
    let (code, message) = match status {
        "400" => ("bad_request", "the request could not be parsed as HTTP/1.1"),
        "414" => (
            "uri_too_long",
            "the request line is over 64 KiB: send fewer or shorter parameters",
        ),
        "431" => ("headers_too_large", "the request headers are too large"),
        "501" => ("not_implemented", "unsupported transfer encoding or method"),
        "505" => ("http_version_not_supported", "use HTTP/1.1"),
        _ => return None,
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    if !head.to_ascii_lowercase().contains("content-length: 0\r\n") {
        return None;
    }
    let reason = head.lines().next()?.get(13..).unwrap_or("").trim();
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some((answer.into_bytes(), end))
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> JsonErrors<S> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        if this.pending.is_some() {
            return Poll::Pending;
        }
        if let Some((answer, replaced)) = rewrite(buf) {
            this.pending = Some((answer, 0));
            // The replaced head counts as written; the JSON answer goes out in its place.
            let _ = this.drain(cx);
            return Poll::Ready(Ok(replaced));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn raw(request: &[u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(JsonErrorListener(listener), app).await });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The server may answer and close before the whole request is sent.
        let _ = s.write_all(request).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_request_line_over_64_kib_gets_a_json_414() {
        let req = format!(
            "GET /analytics/summary?event_type={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(70_000)
        );
        let out = raw(req.as_bytes()).await;
        assert!(
            out.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
            "{out:.200}"
        );
        assert!(out.contains("content-type: application/json"), "{out}");
        let body: serde_json::Value =
            serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"], "uri_too_long");
    }

    #[tokio::test]
    async fn garbage_gets_a_json_400_and_good_requests_pass_untouched() {
        let out = raw(b"\x01\x02 nonsense\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.ends_with("\"error\":\"bad_request\",\"message\":\"the request could not be parsed as HTTP/1.1\"}"), "{out}");
        let out = raw(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(
            out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\nok"),
            "{out}"
        );
    }
}
