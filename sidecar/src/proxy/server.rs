//! The MCP listener: accept, optional TLS, HTTP/1.1 and HTTP/2 (ALPN or prior knowledge),
//! graceful shutdown.
//!
//! ```text
//! TcpListener ──accept──► task per connection ──[TLS handshake ≤ 10 s]──► hyper-util auto
//!     (HTTP/1.1: headers within 30 s; HTTP/2: pings) ──► service::Proxy::handle per request
//! shutdown resolves ──► stop accepting ──► connections finish their requests
//!     (at most settings.shutdown_grace, since SSE streams may never end) ──► Ok(())
//! ```
//!
//! A slow or stalled client holds only its own task: nothing it does blocks the accept loop or
//! other connections.

use super::{Shared, service::Proxy};
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Longest wait for a client's request headers (HTTP/1.1) or TLS handshake.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the MCP endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let grace = shared.settings.shutdown_grace;
    let proxy = Arc::new(Proxy::new(shared.clone()));
    let tally = shared.audit.clone().map(|auditor| {
        let live = shared.live.clone();
        let server = move || crate::audit::ServerInfo {
            name: live
                .current()
                .map_or_else(String::new, |a| a.rules.tool.name.clone()),
            resource: live.current().map(|a| a.rules.resource.clone()),
            upstream: None,
        };
        tokio::spawn(proxy.tally.clone().run(auditor, server))
    });
    let acceptor = tls.map(TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (proxy, builder, acceptor) = (proxy.clone(), builder.clone(), acceptor.clone());
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(super::PeerAddr(peer));
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req).await) }
            });
            let result = match acceptor {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => match handshake(&acceptor, stream).await {
                    Some(tls) => {
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(tls), service))
                            .await
                    }
                    None => return,
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::info!(?grace, "shutdown grace period over; closing the remaining streams");
        }
    }
    connections.abort_all();
    if let (Some(tally), Some(auditor)) = (tally, &shared.audit) {
        tally.abort();
        let server = crate::audit::ServerInfo::default();
        proxy.tally.flush(auditor, &server).await;
    }
    Ok(())
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}
