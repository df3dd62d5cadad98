//! RFC 5424 syslog over TCP (RFC 6587 octet counting) or TLS (RFC 5425):
//!
//! ```text
//! <LEN> <110>1 2026-11-24T07:49:51.123Z host mcp-warden - audit [meta sequenceId="42"] {"class_uid":6003,…}
//! ```
//!
//! PRI = facility (default 13, log audit) × 8 + 6 (informational). Plain syslog has no
//! acknowledgements and a receiver that dies loses what it had read but not yet written, so a
//! batch only counts as delivered once the connection stayed healthy for `confirmAfter`; a task
//! watches the (otherwise silent) read side, and any EOF or error marks the connection broken so
//! the shipper resends everything unconfirmed.

use super::{Delivery, SinkError, client_tls};
use crate::audit::config::SyslogSinkConfig;
use crate::audit::spool::Batch;
use jiff::Timestamp;
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf},
    net::TcpStream,
    task::JoinHandle,
};
use tokio_rustls::TlsConnector;

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

struct Conn {
    writer: WriteHalf<Box<dyn Stream>>,
    broken: Arc<AtomicBool>,
    monitor: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

/// See the module docs.
pub struct SyslogSink {
    cfg: SyslogSinkConfig,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    hostname: String,
    procid: String,
    conn: Option<Conn>,
}

impl fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogSink")
            .field("address", &self.cfg.address)
            .field("tls", &self.tls.is_some())
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

fn header_field(s: &str) -> String {
    // PRINTUSASCII without spaces, at most 255.
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

impl SyslogSink {
    /// A sink for `cfg` (connects on first send).
    pub fn new(cfg: SyslogSinkConfig) -> Result<Self, SinkError> {
        if cfg.facility > 23 {
            return Err(SinkError::Config(format!(
                "syslog facility {} is not 0..=23",
                cfg.facility
            )));
        }
        let tls = match &cfg.tls {
            None => None,
            Some(t) => {
                let host = t.server_name.clone().unwrap_or_else(|| {
                    cfg.address
                        .rsplit_once(':')
                        .map_or(cfg.address.as_str(), |(h, _)| h)
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned()
                });
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| SinkError::Config(format!("TLS server name {host:?}: {e}")))?;
                Some((TlsConnector::from(client_tls(t)?), name))
            }
        };
        let hostname = header_field(
            &cfg.hostname
                .clone()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_default(),
        );
        Ok(Self {
            tls,
            hostname,
            procid: std::process::id().to_string(),
            conn: None,
            cfg,
        })
    }

    pub(super) fn healthy(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| !c.broken.load(Ordering::Relaxed))
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let tcp = tokio::time::timeout(self.cfg.timeout, TcpStream::connect(&self.cfg.address))
            .await
            .map_err(|_| {
                SinkError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                tokio::time::timeout(self.cfg.timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| {
                        SinkError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        ))
                    })??,
            ),
        };
        let (mut reader, writer) = tokio::io::split(stream);
        let broken = Arc::new(AtomicBool::new(false));
        let flag = broken.clone();
        let monitor = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            // Receivers send nothing; EOF or an error means the connection is gone.
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            flag.store(true, Ordering::Relaxed);
        });
        Ok(Conn {
            writer,
            broken,
            monitor,
        })
    }

    /// Frames one record.
    pub fn frame(&self, line: &[u8], sequence: u64, out: &mut Vec<u8>) {
        let pri = u32::from(self.cfg.facility) * 8 + 6;
        let sd = if (1..=2_147_483_647).contains(&sequence) {
            format!("[meta sequenceId=\"{sequence}\"]")
        } else {
            "-".into()
        };
        let header = format!(
            "<{pri}>1 {:.3} {} {} {} audit {sd} ",
            Timestamp::now(),
            self.hostname,
            header_field(&self.cfg.app_name),
            self.procid
        );
        let len = header.len() + line.len();
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(line);
    }

    pub(super) async fn send(&mut self, batch: &Batch) -> Result<Delivery, SinkError> {
        if !self.healthy() {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let mut buf = Vec::with_capacity(batch.jsonl.len() + 120 * batch.len());
        for (line, seq) in batch.lines().zip(&batch.sequences) {
            self.frame(line, *seq, &mut buf);
        }
        let conn = self.conn.as_mut().expect("connected");
        let write = async {
            conn.writer.write_all(&buf).await?;
            conn.writer.flush().await
        };
        match tokio::time::timeout(self.cfg.timeout, write).await {
            Ok(Ok(())) if !conn.broken.load(Ordering::Relaxed) => {
                Ok(Delivery::Unconfirmed(self.cfg.confirm_after))
            }
            Ok(Ok(())) => {
                self.conn = None;
                Err(SinkError::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the syslog receiver closed the connection",
                )))
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e.into())
            }
            Err(_) => {
                self.conn = None;
                Err(SinkError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "syslog write timed out",
                )))
            }
        }
    }

    pub(super) async fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(self.cfg.timeout, c.writer.shutdown()).await;
        }
    }
}
