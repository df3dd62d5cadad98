//! HTTP POST of batches: a JSON array of records (generic webhook), or Splunk HEC events
//! (`{"time":…,"host":…,"source":"mcp-warden","sourcetype":…,"event":<record>}` concatenated,
//! `Authorization: Splunk <token>`). A 2xx answer acknowledges the batch; anything else is
//! retried.

use super::{Delivery, SinkError, client_tls};
use crate::audit::config::{HttpFormat, HttpSinkConfig, TlsConfig};
use crate::audit::spool::Batch;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::fmt;

/// See the module docs.
pub struct HttpSink {
    cfg: HttpSinkConfig,
    uri: http::Uri,
    auth: Option<String>,
    host: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &self.cfg.url)
            .field("format", &self.cfg.format)
            .finish()
    }
}

impl HttpSink {
    /// A sink for `cfg` (reads the token file now).
    pub fn new(cfg: HttpSinkConfig) -> Result<Self, SinkError> {
        let uri: http::Uri = cfg
            .url
            .parse()
            .map_err(|e| SinkError::Config(format!("url {:?}: {e}", cfg.url)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(SinkError::Config(format!(
                "url {:?} must be http:// or https://",
                cfg.url
            )));
        }
        let auth = match &cfg.token_file {
            None => None,
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|e| SinkError::Config(format!("reading {}: {e}", path.display())))?;
                let scheme = match cfg.format {
                    HttpFormat::SplunkHec => "Splunk",
                    HttpFormat::JsonArray => "Bearer",
                };
                Some(format!("{scheme} {}", token.trim()))
            }
        };
        let tls = client_tls(&TlsConfig {
            ca_file: cfg.ca_file.clone(),
            ..TlsConfig::default()
        })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "mcp-warden".into());
        Ok(Self {
            cfg,
            uri,
            auth,
            host,
            client,
        })
    }

    /// The request body for a batch.
    pub fn body(&self, batch: &Batch) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.jsonl.len() + 128 * batch.len() + 2);
        match self.cfg.format {
            HttpFormat::JsonArray => {
                body.push(b'[');
                for (i, l) in batch.lines().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(l);
                }
                body.push(b']');
            }
            HttpFormat::SplunkHec => {
                for l in batch.lines() {
                    // `time` in epoch seconds from the record's `time` (ms), read cheaply.
                    let ms = serde_json::from_slice::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("time").and_then(serde_json::Value::as_i64))
                        .unwrap_or_default();
                    let head = serde_json::json!({
                        "time": format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000)),
                        "host": self.host,
                        "source": "mcp-warden",
                        "sourcetype": self.cfg.sourcetype,
                    })
                    .to_string();
                    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
                    body.extend_from_slice(b",\"event\":");
                    body.extend_from_slice(l);
                    body.extend_from_slice(b"}\n");
                }
            }
        }
        body
    }

    pub(super) async fn send(&mut self, batch: &Batch) -> Result<Delivery, SinkError> {
        let mut req = Request::post(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("mcp-warden/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = &self.auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(Bytes::from(self.body(batch))))
            .map_err(|e| SinkError::Config(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SinkError::Rejected(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| SinkError::Rejected(e.to_string()))?
                .to_bytes();
            if status.is_success() {
                Ok(Delivery::Delivered)
            } else {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                Err(SinkError::Rejected(format!("HTTP {status}: {text}")))
            }
        };
        tokio::time::timeout(self.cfg.timeout, exchange)
            .await
            .map_err(|_| SinkError::Rejected("HTTP request timed out".into()))?
    }
}
