//! Real processes for tests (peers, our own binaries), each killed when dropped, with its output
//! kept for failure messages.
//!
//! ```text
//! Proc::spawn(cmd, ready-line matcher, deadline) ──► (Proc, what the matcher extracted)
//!        stdout/stderr ──reader threads──► log buffer (+ matcher)      Drop: kill + wait
//! ```

use std::{
    io::{BufRead, BufReader, Read},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port on 127.0.0.1")
}

/// A child process, killed (SIGKILL) when dropped; its output is printed when a test panics
/// while it runs.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
    /// Held open for [`Proc::spawn_tied`]: the child sees end-of-file when this process exits.
    _stdin: Option<ChildStdin>,
}

impl Proc {
    /// Starts `cmd` (stdin closed) and waits until a line of its stdout or stderr makes `ready`
    /// return `Some`, for at most `deadline`.
    ///
    /// # Errors
    ///
    /// It cannot start, or it printed no ready line in time (the message holds its output).
    pub fn spawn<T: Send + 'static>(
        name: &str,
        cmd: Command,
        deadline: Duration,
        ready: impl Fn(&str) -> Option<T> + Send + Sync + 'static,
    ) -> Result<(Self, T), String> {
        Self::launch(name, cmd, false, ready)?.ready(deadline)
    }

    /// Like [`Proc::spawn`], with the child's stdin a pipe held open until the `Proc` drops: a
    /// child that exits at end-of-file on stdin (node with [`crate::peers::NODE_EXITS_WITH_PARENT`])
    /// dies with the test process even when that one is killed.
    ///
    /// # Errors
    ///
    /// As [`Proc::spawn`].
    pub fn spawn_tied<T: Send + 'static>(
        name: &str,
        cmd: Command,
        deadline: Duration,
        ready: impl Fn(&str) -> Option<T> + Send + Sync + 'static,
    ) -> Result<(Self, T), String> {
        Self::launch(name, cmd, true, ready)?.ready(deadline)
    }

    /// Starts `cmd` (stdin closed) without waiting: pair it with [`Proc::wait_port`] or
    /// [`Proc::wait_line`].
    ///
    /// # Errors
    ///
    /// It cannot start.
    pub fn start(name: &str, cmd: Command) -> Result<Self, String> {
        Ok(Self::launch(name, cmd, false, |_| None::<()>)?.proc)
    }

    fn launch<T: Send + 'static>(
        name: &str,
        mut cmd: Command,
        tied: bool,
        ready: impl Fn(&str) -> Option<T> + Send + Sync + 'static,
    ) -> Result<Launched<T>, String> {
        let mut child = cmd
            .stdin(if tied { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let ready = Arc::new(ready);
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for output in outputs {
            let (log, tx, ready) = (log.clone(), tx.clone(), ready.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if let Some(found) = ready(&line) {
                        let _ = tx.send(found);
                    }
                    let mut log = log.lock().expect("log lock");
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Launched {
            proc: Self {
                name: name.to_owned(),
                child,
                log,
                _stdin: stdin,
            },
            found: rx,
        })
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits, at most `within`, for a line printed after the first `since` bytes of
    /// [`Proc::log`] for which `matches` holds; returns it. Take `since` from `log().len()`
    /// before causing the line, so one printed meanwhile is not missed.
    ///
    /// # Errors
    ///
    /// No such line in time, or the process exited first (the message holds its output).
    pub fn wait_line(
        &mut self,
        since: usize,
        within: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if let Some(line) = log
                .get(since..)
                .and_then(|new| new.lines().find(|l| matches(l)).map(str::to_owned))
            {
                return Ok(line);
            }
            let exited = self.try_wait();
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "{} printed no awaited line within {within:?} (exit status: {exited:?}); its output:\n{log}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits, at most `within`, until 127.0.0.1:`port` accepts connections.
    ///
    /// # Errors
    ///
    /// Not in time, or the process exited first (the message holds its output).
    pub fn wait_port(&mut self, port: u16, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = self.try_wait();
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on {addr} within {within:?} (exit status: {exited:?}); its output:\n{}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- output of {} ----\n{}", self.name, self.log());
        }
    }
}

/// A started process and the channel its ready matcher answers on.
struct Launched<T> {
    proc: Proc,
    found: mpsc::Receiver<T>,
}

impl<T> Launched<T> {
    fn ready(self, deadline: Duration) -> Result<(Proc, T), String> {
        let Self { mut proc, found } = self;
        match found.recv_timeout(deadline) {
            Ok(found) => Ok((proc, found)),
            Err(_) => {
                let status = proc.try_wait();
                Err(format!(
                    "{} did not become ready within {deadline:?} (exit status: {status:?}); its output:\n{}",
                    proc.name,
                    proc.log()
                ))
            }
        }
    }
}
