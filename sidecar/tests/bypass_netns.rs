//! The bypass check (`bypass`) in a network namespace of its own, as in a pod: the real sidecar
//! binary, standalone, in front of a TCP listener on the McpTool's upstream port (8080).
//!
//! ```text
//! netns mcpw-bypass-<pid>: lo 127.0.0.1, veth mcpw0 10.200.0.2/24 (the "pod address")
//!   listener 127.0.0.1:8080 ──► sidecar (check every second) ──► bypassable 0
//!   listener 0.0.0.0:8080   ──►                                ──► bypassable 1, 10.200.0.2:8080
//!   metrics read with `ip netns exec … curl` (the namespace is not reachable from the host)
//! ```
//!
//! Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN), iproute2's `ip`, veth, python3 and curl. When
//! the namespace cannot be made the test fails saying so: it is never skipped.

use mcp_warden_test_support::{proc::Proc, repo_root};
use std::{
    process::Command,
    time::{Duration, Instant},
};

const POD_ADDRESS: &str = "10.200.0.2";

/// A network namespace, deleted (with its veth pair) when dropped, also when a test fails.
struct Netns(String);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// A namespace with loopback up and a veth pair, `mcpw0` holding [`POD_ADDRESS`].
    fn new(tag: &str) -> Self {
        let ns = Self(format!("mcpw-bypass-{}-{tag}", std::process::id()));
        let name = ns.0.as_str();
        let setup = [
            vec!["netns", "add", name],
            vec!["-n", name, "link", "set", "lo", "up"],
            vec![
                "-n", name, "link", "add", "mcpw0", "type", "veth", "peer", "name", "mcpw1",
            ],
            vec!["-n", name, "addr", "add", "10.200.0.2/24", "dev", "mcpw0"],
            vec!["-n", name, "link", "set", "mcpw0", "up"],
            vec!["-n", name, "link", "set", "mcpw1", "up"],
        ];
        for args in setup {
            if let Err(e) = ip(&args) {
                panic!(
                    "this test needs a network namespace with a veth pair: run it as root (or with \
                     CAP_SYS_ADMIN and CAP_NET_ADMIN), with iproute2 and the veth driver. {e}"
                );
            }
        }
        ns
    }

    /// `cmd args…` run inside the namespace.
    fn command(&self, cmd: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, cmd]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// A TCP listener on `host:8080` inside `ns` (python3), ready once it printed `listening`.
fn listener(ns: &Netns, host: &str) -> Proc {
    let script = "import socket,sys,time\n\
                  s=socket.socket(socket.AF_INET)\n\
                  s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                  s.bind((sys.argv[1],8080)); s.listen(16); print('listening',flush=True)\n\
                  while True: c,_=s.accept(); c.close()\n";
    let cmd = ns.command("python3", &["-c", script, host]);
    Proc::spawn("listener", cmd, Duration::from_secs(10), |l| {
        l.contains("listening").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .0
}

/// The sidecar's metrics line for the bypass gauge, read inside `ns`.
fn gauge(ns: &Netns) -> Option<String> {
    let out = ns
        .command("curl", &["-sf", "http://127.0.0.1:9901/metrics"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("mcp_warden_upstream_bypassable{"))
        .map(str::to_owned)
}

fn wait_gauge(ns: &Netns, sidecar: &Proc, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        last = gauge(ns);
        if last.as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the gauge never read {want:?} (last: {last:?}); the sidecar's output:\n{}",
        sidecar.log()
    );
}

/// The standalone sidecar inside `ns`, checking every second; `pod_ip` set as the injector's
/// downward-API `POD_IP` would be, else the namespace's addresses are read from /proc.
fn sidecar(ns: &Netns, pod_ip: Option<&str>) -> Proc {
    let tool = repo_root().join("examples/payments/tool.yaml");
    let mut cmd = ns.command(
        env!("CARGO_BIN_EXE_mcp-warden-sidecar"),
        &[
            "run",
            "--config",
            tool.to_str().expect("a UTF-8 path"),
            "--listen",
            "127.0.0.1:9080",
            "--admin-listen",
            "127.0.0.1:9901",
            "--bypass-check-seconds",
            "1",
        ],
    );
    cmd.env_remove("POD_IPS").env_remove("POD_IP");
    if let Some(a) = pod_ip {
        cmd.env("POD_IP", a);
    }
    Proc::spawn("sidecar", cmd, Duration::from_secs(20), |l| {
        l.contains("listening").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .0
}

#[test]
fn an_upstream_on_the_pod_address_is_bypassable_and_one_on_loopback_is_not() {
    let ns = Netns::new("proc");
    let mut upstream = listener(&ns, "127.0.0.1");
    let mut sidecar = sidecar(&ns, None);
    wait_gauge(
        &ns,
        &sidecar,
        r#"mcp_warden_upstream_bypassable{port="8080"} 0"#,
    );
    assert!(
        sidecar
            .log()
            .contains("the upstream answers on loopback only"),
        "{}",
        sidecar.log()
    );
    // The server restarts listening on every address: the next check sees it.
    upstream.kill();
    let since = sidecar.log().len();
    let _upstream = listener(&ns, "0.0.0.0");
    wait_gauge(
        &ns,
        &sidecar,
        r#"mcp_warden_upstream_bypassable{port="8080"} 1"#,
    );
    let warning = sidecar
        .wait_line(since, Duration::from_secs(5), |l| {
            l.contains("without the sidecar")
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        warning.contains("10.200.0.2:8080") && warning.contains("WARN"),
        "{warning}"
    );
    let warnings = sidecar.log()[since..]
        .matches("without the sidecar")
        .count();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        sidecar.log()[since..]
            .matches("without the sidecar")
            .count(),
        warnings,
        "one warning per change, not per check"
    );
}

#[test]
fn the_downward_api_address_is_the_one_checked() {
    let ns = Netns::new("env");
    let _upstream = listener(&ns, POD_ADDRESS);
    // The injector's POD_IP names the address; an address the pod does not have answers nothing.
    let sidecar = sidecar(&ns, Some(POD_ADDRESS));
    wait_gauge(
        &ns,
        &sidecar,
        r#"mcp_warden_upstream_bypassable{port="8080"} 1"#,
    );
    drop(sidecar);
    let sidecar = self::sidecar(&ns, Some("10.200.0.9"));
    wait_gauge(
        &ns,
        &sidecar,
        r#"mcp_warden_upstream_bypassable{port="8080"} 0"#,
    );
}
