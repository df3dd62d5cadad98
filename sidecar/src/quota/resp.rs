//! A minimal Redis client: RESP2 over tokio TCP, enough for `AUTH`, `SELECT`, `SCRIPT LOAD`
//! and `EVALSHA`. No TLS (`rediss://` is refused), no cluster redirections.
//!
//! One request at a time per connection; [`Pool`] holds a few connections. A connection that
//! failed, timed out or was dropped mid-request is discarded (its reply stream is unknown),
//! and every connection made before a failure is replaced on its next use, so a restarted
//! Redis is reached with fresh connections (and a fresh script load).

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Mutex,
};

/// Largest reply accepted.
const MAX_REPLY: usize = 1 << 20;

/// Where Redis is, from `redis://[user[:password]@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `host:port`.
    pub addr: String,
    /// ACL user.
    pub username: Option<String>,
    /// Password (`AUTH`).
    pub password: Option<String>,
    /// Database number (`SELECT`).
    pub db: u32,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

impl std::str::FromStr for RedisTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        match url.scheme() {
            "redis" => {}
            "rediss" => return Err("rediss:// (TLS) is not supported yet; use redis://".into()),
            other => return Err(format!("unsupported scheme {other:?}; use redis://")),
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the Redis URL has no host")?;
        let port = url.port().unwrap_or(6379);
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse()
                .map_err(|_| format!("{n:?} is not a database number"))?,
        };
        let decode = |s: &str| {
            url::form_urlencoded::parse(s.as_bytes())
                .map(|(k, v)| format!("{k}{v}"))
                .collect::<String>()
        };
        Ok(Self {
            addr: format!("{host}:{port}"),
            username: Some(url.username()).filter(|u| !u.is_empty()).map(decode),
            password: url.password().map(decode),
            db,
        })
    }
}

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR …`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$…` (`None` for a null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*…` (`None` for a null array).
    Array(Option<Vec<Reply>>),
}

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// No connection could be made.
    #[error("cannot connect to Redis at {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke.
    #[error("Redis connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// Redis sent something that is not RESP, or not what was expected.
    #[error("unexpected Redis reply: {0}")]
    Protocol(String),
    /// Redis answered with an error.
    #[error("Redis error: {0}")]
    Server(String),
}

impl RedisError {
    /// The `error` label value.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout(_) => "timeout",
            Self::Io(_) => "io",
            Self::Protocol(_) => "protocol",
            Self::Server(_) => "server",
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one reply from the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, RedisError> {
    let bad = |what: &str| RedisError::Protocol(what.to_owned());
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..end]).map_err(|_| bad("non-UTF-8 header"))?;
    let rest = end + 2;
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad("bad integer"));
    match buf.first() {
        Some(b'+') => Ok(Some((Reply::Simple(line.to_owned()), rest))),
        Some(b'-') => Ok(Some((Reply::Error(line.to_owned()), rest))),
        Some(b':') => Ok(Some((Reply::Int(int(line)?), rest))),
        Some(b'$') => {
            let len = int(line)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), rest)));
            }
            let len = usize::try_from(len).map_err(|_| bad("bad length"))?;
            if len > MAX_REPLY {
                return Err(bad("bulk string too long"));
            }
            if buf.len() < rest + len + 2 {
                return Ok(None);
            }
            if &buf[rest + len..rest + len + 2] != b"\r\n" {
                return Err(bad("bulk string not terminated"));
            }
            Ok(Some((
                Reply::Bulk(Some(buf[rest..rest + len].to_vec())),
                rest + len + 2,
            )))
        }
        Some(b'*') => {
            let n = int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), rest)));
            }
            let n = usize::try_from(n).map_err(|_| bad("bad length"))?;
            if n > MAX_REPLY {
                return Err(bad("array too long"));
            }
            let mut items = Vec::with_capacity(n.min(64));
            let mut at = rest;
            for _ in 0..n {
                match parse(&buf[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(bad("unknown reply type")),
    }
}

/// One connection; the script is loaded when it is made.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    generation: u64,
    sha: String,
}

impl Conn {
    async fn connect(
        target: &RedisTarget,
        script: &str,
        generation: u64,
    ) -> Result<Self, RedisError> {
        let stream =
            TcpStream::connect(&target.addr)
                .await
                .map_err(|source| RedisError::Connect {
                    addr: target.addr.clone(),
                    source,
                })?;
        stream.set_nodelay(true)?;
        let mut conn = Self {
            stream,
            buf: Vec::with_capacity(512),
            generation,
            sha: String::new(),
        };
        if let Some(password) = &target.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &target.username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            conn.ok(&args).await?;
        }
        if target.db != 0 {
            let db = target.db.to_string();
            conn.ok(&[b"SELECT", db.as_bytes()]).await?;
        }
        conn.load(script).await?;
        Ok(conn)
    }

    async fn load(&mut self, script: &str) -> Result<(), RedisError> {
        match self.call(&[b"SCRIPT", b"LOAD", script.as_bytes()]).await? {
            Reply::Bulk(Some(sha)) => {
                self.sha = String::from_utf8(sha)
                    .map_err(|_| RedisError::Protocol("script SHA is not UTF-8".into()))?;
                Ok(())
            }
            Reply::Error(e) => Err(RedisError::Server(e)),
            other => Err(RedisError::Protocol(format!(
                "SCRIPT LOAD answered {other:?}"
            ))),
        }
    }

    async fn ok(&mut self, args: &[&[u8]]) -> Result<(), RedisError> {
        match self.call(args).await? {
            Reply::Error(e) => Err(RedisError::Server(e)),
            _ => Ok(()),
        }
    }

    async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let mut out = Vec::with_capacity(256);
        encode(args, &mut out);
        self.stream.write_all(&out).await?;
        self.buf.clear();
        loop {
            if let Some((reply, _)) = parse(&self.buf)? {
                return Ok(reply);
            }
            if self.buf.len() > MAX_REPLY {
                return Err(RedisError::Protocol("reply too long".into()));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(RedisError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// `EVALSHA`, reloading the script once if Redis forgot it (`SCRIPT FLUSH`).
    async fn eval(
        &mut self,
        script: &str,
        keys: &[String],
        argv: &[String],
    ) -> Result<Reply, RedisError> {
        for attempt in 0..2 {
            let numkeys = keys.len().to_string();
            let sha = self.sha.clone();
            let mut args: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + argv.len());
            args.extend([b"EVALSHA".as_slice(), sha.as_bytes(), numkeys.as_bytes()]);
            args.extend(keys.iter().map(|k| k.as_bytes()));
            args.extend(argv.iter().map(|a| a.as_bytes()));
            match self.call(&args).await? {
                Reply::Error(e) if e.starts_with("NOSCRIPT") && attempt == 0 => {
                    self.load(script).await?;
                }
                Reply::Error(e) => return Err(RedisError::Server(e)),
                reply => return Ok(reply),
            }
        }
        Err(RedisError::Server(
            "NOSCRIPT after reloading the script".into(),
        ))
    }
}

/// A few connections to one Redis, each used for one request at a time.
#[derive(Debug)]
pub struct Pool {
    target: RedisTarget,
    script: String,
    timeout: Duration,
    slots: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
    /// Bumped on every failure: older connections are replaced on their next use.
    generation: AtomicU64,
}

impl Pool {
    /// A pool of `size` lazily made connections; every request (connecting included) must
    /// finish within `timeout`.
    pub fn new(target: RedisTarget, script: &str, size: usize, timeout: Duration) -> Self {
        Self {
            target,
            script: script.to_owned(),
            timeout,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// Runs the script with `keys` and `argv` and returns its reply.
    pub async fn eval(&self, keys: &[String], argv: &[String]) -> Result<Reply, RedisError> {
        // A free connection if there is one, else wait for the next in turn.
        let mut guard = match self.slots.iter().find_map(|s| s.try_lock().ok()) {
            Some(guard) => guard,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                self.slots[i].lock().await
            }
        };
        let generation = self.generation.load(Ordering::Acquire);
        let result = tokio::time::timeout(self.timeout, async {
            // Taken out of the slot for the call: if this future is dropped mid-way, the
            // connection (whose next reply is unknown) is dropped with it.
            let mut conn = match guard.take() {
                Some(conn) if conn.generation >= generation => conn,
                _ => Conn::connect(&self.target, &self.script, generation).await?,
            };
            let reply = conn.eval(&self.script, keys, argv).await?;
            *guard = Some(conn);
            Ok(reply)
        })
        .await
        .unwrap_or(Err(RedisError::Timeout(self.timeout)));
        if result.is_err() {
            *guard = None;
            self.generation.fetch_max(generation + 1, Ordering::AcqRel);
        }
        result
    }
}
