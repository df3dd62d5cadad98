//! The text of `docs/performance.md` and of the README table, from [`Figures`].
//!
//! ```text
//! Figures ──targets()──► met / missed per goal of issues #5, #6, #8 and #21
//!         ──render()───► (performance.md, README block)
//! ```

use crate::report::{Figures, Load, Spread, Target, WRITTEN_DIR, row};
use serde_json::Value;
use std::{collections::BTreeMap, fmt::Write as _, path::Path};

fn spread_target(what: String, target: &str, s: Spread, d: usize, met: bool) -> Target {
    Target {
        what,
        target: target.to_owned(),
        measured: s.show(d),
        met: (s.n > 0).then_some(met),
    }
}

fn ms(v: &Value, key: &str) -> Option<f64> {
    v[key].as_f64()
}

/// The proxy goals of issue #21 for the A/B runs of one ack level: CPU per call (and calls per
/// core) — ≤ 35 µs with `written`, ≤ 40 µs with `durable` —, and with `written` the latency added
/// above the floor's (the bare proxy of the same run) at 1,000 and 4,000 req/s.
fn load_targets(l: &Load, ack: &str, floor: Option<&Load>) -> Vec<Target> {
    let written = ack == "written";
    let (cpu_goal, core_goal) = if written {
        (35.0, 28_000.0)
    } else {
        (40.0, 25_000.0)
    };
    let mut t = vec![
        spread_target(
            format!("tools/call per sidecar core (req/s), ack: {ack}"),
            &format!("≥ {},000", core_goal as u64 / 1000),
            l.per_core,
            0,
            l.per_core.median >= core_goal,
        ),
        spread_target(
            format!("sidecar CPU per tools/call (µs), ack: {ack}"),
            &format!("≤ {cpu_goal}"),
            l.cpu_us_per_call,
            1,
            l.cpu_us_per_call.median <= cpu_goal,
        ),
    ];
    let Some(floor) = floor.filter(|_| written) else {
        return t;
    };
    for (rate, p, goal) in [
        (1000, "p50", 20.0),
        (1000, "p99", 80.0),
        (4000, "p99", 150.0),
    ] {
        let (added, by_floor) = (l.added(rate, p), floor.added(rate, p));
        let above = added.median - by_floor.median;
        t.push(Target {
            what: format!("added latency {p} at {rate} req/s above the floor (µs), ack: {ack}"),
            target: format!("≤ +{goal}"),
            measured: format!(
                "{above:+.0} ({:.0} − floor {:.0})",
                added.median, by_floor.median
            ),
            met: (added.n > 0 && by_floor.n > 0).then_some(above <= goal),
        });
    }
    t
}

/// Every goal of the issues, met or missed.
pub fn targets(f: &Figures) -> Vec<Target> {
    let mut t = load_targets(&f.durable, "durable", f.floor.as_ref());
    if let Some(w) = &f.written {
        t.extend(load_targets(w, "written", f.floor.as_ref()));
    }
    let mib = |what: &str, goal: f64, v: Option<f64>| Target {
        what: what.to_owned(),
        target: format!("≤ {goal} MiB"),
        measured: v.map_or("n/a".into(), |v| format!("{v:.1} MiB")),
        met: v.map(|v| v <= goal),
    };
    t.push(mib(
        "sidecar RSS idle, 1,000-client policy set",
        16.0,
        f.rss_idle,
    ));
    t.push(mib("sidecar RSS peak under load", 40.0, f.rss_peak));
    for (mode, v) in &f.revocation {
        let max = ms(v, "max_ms");
        t.push(Target {
            what: format!("revocation, {mode} mode, slowest of 20 (ms)"),
            target: "≤ 1,000".into(),
            measured: max.map_or("n/a".into(), |m| format!("{m:.0}")),
            met: max.map(|m| m <= 1000.0),
        });
    }
    if let Some(list) = f.audit.as_ref().and_then(Value::as_array) {
        for a in list {
            let ack = a["ack"].as_str().unwrap_or("?");
            let rps = a["records_per_second"].as_f64();
            let p50 = a["single_p50_us"].as_f64();
            t.push(Target {
                what: format!("audit records/s into the spool, one core, ack: {ack}"),
                target: "≥ 50,000".into(),
                measured: rps.map_or("n/a".into(), |v| format!("{v:.0}")),
                met: rps.map(|v| v >= 50_000.0),
            });
            // A lone durable record: one device write (issue #21), else the encoding and write.
            let goal = if ack == "durable" { 100.0 } else { 20.0 };
            t.push(Target {
                what: format!("audit cost of one record, median (µs), ack: {ack}"),
                target: format!("≤ {goal}"),
                measured: p50.map_or("n/a".into(), |v| format!("{v:.1}")),
                met: p50.map(|v| v <= goal),
            });
        }
    }
    let push = f.push.as_ref().and_then(|v| ms(v, "p50_ms"));
    t.push(Target {
        what: "operator: one McpClient change pushed, median (ms), files source".into(),
        target: "≤ 100".into(),
        measured: push.map_or("n/a".into(), |v| format!("{v:.0}")),
        met: push.map(|v| v <= 100.0),
    });
    t.push(mib(
        "operator RSS with 10,000 / 1,000 / 2,000 CRs",
        300.0,
        f.operator_rss.1.or(f.operator_rss.0),
    ));
    t
}

fn code_block(out: &mut String, text: &str, max_lines: usize) {
    out.push_str("```text\n");
    for line in text.lines().take(max_lines) {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("```\n\n");
}

/// A table's header row and its separator.
fn header(o: &mut String, cols: &[&str]) {
    row(o, cols);
    row(o, &vec!["---"; cols.len()]);
}

/// An added latency above the floor's, and its ratio to it (issue #21: every latency figure also
/// against a bare proxy's in the same run); dashes without a floor.
fn vs_floor(added: f64, floor: Option<f64>) -> [String; 2] {
    match floor.filter(|f| *f > 0.0) {
        Some(f) => [format!("{:+.0}", added - f), format!("× {:.2}", added / f)],
        None => ["–".into(), "–".into()],
    }
}

/// The oha tables of one side (the sidecar at one ack level, or the bare proxy).
fn latency_tables(o: &mut String, l: &Load, title: &str, proxy: &str, floor: Option<&Load>) {
    let _ = writeln!(o, "### {title}\n");
    header(
        o,
        &[
            "rate",
            "percentile",
            "added (through − direct)",
            "above the floor (median)",
            "÷ floor",
            "direct",
            "through",
        ],
    );
    for (rate, p, a, d, t) in &l.latency {
        let [above, ratio] = vs_floor(a.median, floor.map(|f| f.added(*rate, p).median));
        row(
            o,
            &[
                &rate.to_string(),
                p,
                &a.show(0),
                &above,
                &ratio,
                &d.show(0),
                &t.show(0),
            ],
        );
    }
    o.push('\n');
    row(
        o,
        &[
            "rate",
            "achieved through (req/s)",
            &format!("{proxy} CPU per call (µs)"),
            "non-200 answers",
        ],
    );
    row(o, &["---", "---", "---", "---"]);
    for (rate, cpu, bad, achieved) in &l.rate_cpu {
        row(
            o,
            &[
                &rate.to_string(),
                &achieved.show(0),
                &cpu.show(1),
                &format!("{bad:.0}"),
            ],
        );
    }
    o.push('\n');
}

/// The shapes of issue #21: a `tools/call` answered with 100 KiB, and one answered over SSE with
/// 100 progress events before the result (per event: above the floor ÷ 100).
fn shapes_table(o: &mut String, f: &Figures) {
    if f.shapes.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "### Shapes: a 100 KiB result (`big`), {} SSE progress events before the answer (`progress`)\n\noha open loop, `ack: durable`, µs; per event = above the floor ÷ {}.\n\n",
        crate::upstream::PROGRESS_EVENTS,
        crate::upstream::PROGRESS_EVENTS
    );
    header(
        o,
        &[
            "shape",
            "percentile",
            "added (through − direct)",
            "floor added",
            "above the floor",
            "÷ floor",
            "per event above the floor",
        ],
    );
    for (shape, p, added, floor, above) in &f.shapes {
        let [_, ratio] = vs_floor(added.median, Some(floor.median));
        let per_event = if *shape == "progress" && above.n > 0 {
            format!(
                "{:.1}",
                above.median / f64::from(crate::upstream::PROGRESS_EVENTS)
            )
        } else {
            "–".into()
        };
        row(
            o,
            &[
                shape,
                p,
                &added.show(0),
                &floor.show(0),
                &above.show(0),
                &ratio,
                &per_event,
            ],
        );
    }
    o.push('\n');
}

/// `(performance.md, README block)`.
pub fn render(f: &Figures, machine: &BTreeMap<String, String>, results: &Path) -> (String, String) {
    let m = |k: &str| machine.get(k).map_or("?", String::as_str);
    let dir = results
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut o = String::new();
    let _ = write!(
        o,
        "# Performance\n\n<!-- Generated by `make bench` (bench/run.sh → bench-tool report); edit bench/src/report_render.rs, not this file. -->\n\n\
Run `{dir}` on {date}, commit `{commit}`. Raw outputs: `bench/results/{dir}/` on the machine that ran it (git-ignored).\n\n\
## Machine\n\n| | |\n| --- | --- |\n| CPU | {cpu} × {cpus} |\n| memory | {mem} |\n| kernel | {kernel} |\n| toolchain | {rustc} |\n| load generators | {wrk}, {oha} |\n| pinning | {pin} |\n| load average before / after | {lb} / {la} |\n\n\
The build machines are shared: other compiles may have run during the measurement (see the load average); the interleaving (A B A B …) spreads such noise over both sides alike.\n\n",
        date = m("date"),
        commit = m("commit"),
        cpu = m("cpu"),
        cpus = m("cpus"),
        mem = m("memory"),
        kernel = m("kernel"),
        rustc = m("rustc"),
        wrk = m("wrk"),
        oha = m("oha"),
        pin = m("pinning"),
        lb = m("loadavg_before"),
        la = m("loadavg_after"),
    );
    o.push_str("## Targets\n\nAgainst the goals of issues #8 (proxy), #5 (audit) and #6 (operator). Medians over the repetitions, min–max in parentheses.\n\n");
    row(&mut o, &["figure", "target", "measured", ""]);
    row(&mut o, &["---", "---", "---", "---"]);
    for r in f.target_rows() {
        row(&mut o, &r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let _ = write!(
        o,
        "\n## Method\n\n\
- **Upstream**: `bench-upstream` (hyper, Streamable HTTP, JSON responses, stateless): `tools/list` with 20 tools, `tools/call echo`. It shares CPU {load} with the load generator and is never the bottleneck of the through runs (compare the direct figures).\n\
- **Sidecar**: `mcp-warden-sidecar run --config` on CPU {sc} (tokio sees one CPU, so one worker), default log level (`info`: denials are logged, allowed calls only at `debug`, the audit trail has every call), full chain: JWT verification (RS256 and ES256 issuers, discovery + JWKS from a static issuer on 127.0.0.1, verified-token cache on), a policy set of 1,000 McpClients / 200 tool entries / 2,000 McpPolicies, per-client and per-policy rate limits of 100,000/s (never triggered), audit to the spool (group commit; a call's request record is on disk before the call is forwarded) with a file sink shipping.\n\
- **Two ack levels**: the A/B runs happen twice, with `ack: durable` (the request record is fsynced before forwarding: the issue's setting) and with `ack: written` (written to the page cache before forwarding: survives a crash of the sidecar, not a power loss; raw outputs in `{written}/`). With `durable` the added latency includes an `fdatasync` of the shared virtual disk, whose own latency varies by milliseconds.\n\
- **Load**: `tools/call echo` with a bearer token. wrk (closed loop, 1 thread, {conns} connections, {secs} s) rotates through 200 tokens of 200 clients of both issuers (a Lua `request()`); oha (open loop at fixed rates, `--latency-correction` against coordinated omission, {conns} connections, {secs} s) sends one token per run, RS256 and ES256 in alternate repetitions. A 3 s warm-up verifies every token once; cold verification is measured by the micro-benches.\n\
- **A/B**: every repetition runs direct then through, back to back ({reps} repetitions). Added latency = through − direct of the same repetition, per percentile.\n\
- **Floor**: in the `ack: durable` pass every repetition also runs through `bench-tool passthrough` (`bench/src/passthrough.rs`), a bare hyper proxy pinned like the sidecar that reads the whole body, forwards it on a pooled keep-alive connection and returns the answer: no parsing, no auth, no audit. What it adds is what any proxy in the sidecar's place pays on this machine (one more loopback hop each way, two more cross-CPU wake-ups); the governance chain costs what the sidecar adds beyond it.\n\
- **CPU**: sidecar utime + stime from `/proc/<pid>/stat` over each loaded window ÷ requests answered. Throughput per sidecar core = 1 s ÷ CPU per request.\n\
- **RSS**: `VmRSS` after start with the policy set loaded and two calls made (idle); `VmHWM` after all load runs (peak).\n\
- **Revocation**: a client's `suspended` flipped in the CR file (atomic rename), then calls until the first 403; 20 samples. File mode: the sidecar reads the file. Operator mode: `mcp-warden-operator run --source files:` reads it and pushes to a sidecar run with `--operator`.\n\
- **Operator**: `--source files:` with 10,000 McpClients / 1,000 McpTools / 2,000 McpPolicies; a watch as the pod of one McpTool; one McpClient file rewritten (the client is granted that tool), time until the new bundle arrives on the watch; RSS from `/proc`. The in-process index figure comes from `operator/tests/scale.rs` (release).\n\
- **Audit**: `bench-tool audit`, in one process on one core (current-thread runtime): 256 concurrent appenders of a full `tools/call` record, then one caller timing `Auditor::record` alone; for `ack: durable` and `ack: written`.\n\n",
        load = m("pinning").rsplit("CPU ").next().unwrap_or("1"),
        sc = if m("pinning").contains("sidecar CPU 0") {
            "0"
        } else {
            "?"
        },
        conns = m("reps").split("connections: ").nth(1).unwrap_or("?"),
        secs = m("reps")
            .split("seconds: ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap_or("?"),
        reps = m("reps").split(';').next().unwrap_or("?"),
        written = WRITTEN_DIR,
    );
    o.push_str("## Throughput (wrk, closed loop)\n\n");
    row(
        &mut o,
        &["", "ack: durable", "ack: written", "floor: bare proxy"],
    );
    row(&mut o, &["---", "---", "---", "---"]);
    let all = |g: fn(&Load) -> Spread, d: usize| {
        let or_not_run = |l: &Option<Load>| l.as_ref().map_or("not run".into(), |l| g(l).show(d));
        [
            g(&f.durable).show(d),
            or_not_run(&f.written),
            or_not_run(&f.floor),
        ]
    };
    for (what, g, d) in [
        (
            "direct (req/s)",
            (|l| l.wrk_direct) as fn(&Load) -> Spread,
            0,
        ),
        ("through (req/s)", |l| l.wrk_through, 0),
        ("proxy CPU utilization (1 = one core)", |l| l.cpu_util, 2),
        ("proxy CPU per call (µs)", |l| l.cpu_us_per_call, 1),
        ("per proxy core (req/s)", |l| l.per_core, 0),
    ] {
        let [a, b, c] = all(g, d);
        row(&mut o, &[what, &a, &b, &c]);
    }
    o.push_str("\n## Latency (oha, open loop, coordinated-omission corrected)\n\nAll in µs.\n\n");
    let floor = f.floor.as_ref();
    latency_tables(&mut o, &f.durable, "ack: durable", "sidecar", floor);
    if let Some(w) = &f.written {
        latency_tables(&mut o, w, "ack: written", "sidecar", floor);
    }
    if let Some(floor) = floor {
        latency_tables(
            &mut o,
            floor,
            "floor: a bare pass-through proxy in the sidecar's place",
            "proxy",
            None,
        );
    }
    shapes_table(&mut o, f);
    let _ = write!(
        o,
        "\n## Memory\n\n| | |\n| --- | --- |\n| sidecar RSS idle (1,000 clients, 2,000 policies loaded) | {} |\n| … of which anonymous (this sidecar's own memory) | {} |\n| … of which file-backed (the program's code and libraries, shared by every sidecar of the same image on a node) | {} |\n| sidecar RSS peak (VmHWM after the load runs) | {} |\n\n",
        f.rss_idle.map_or("n/a".into(), |v| format!("{v:.1} MiB")),
        f.rss_idle_split
            .0
            .map_or("n/a".into(), |v| format!("{v:.1} MiB")),
        f.rss_idle_split
            .1
            .map_or("n/a".into(), |v| format!("{v:.1} MiB")),
        f.rss_peak.map_or("n/a".into(), |v| format!("{v:.1} MiB")),
    );
    o.push_str("## Revocation propagation (write → first denial, 20 samples, ms)\n\n");
    row(&mut o, &["mode", "median", "p95", "slowest"]);
    row(&mut o, &["---", "---", "---", "---"]);
    for (mode, v) in &f.revocation {
        let g = |k| ms(v, k).map_or("n/a".into(), |x| format!("{x:.0}"));
        row(&mut o, &[mode, &g("p50_ms"), &g("p95_ms"), &g("max_ms")]);
    }
    o.push_str("\n## tools/list filtering, 1,000 tools listed by the upstream (200 declared; the caller sees only what its policies grant)\n\noha closed loop, one connection, 5 s per side. µs.\n\n");
    row(
        &mut o,
        &[
            "direct p50",
            "through p50",
            "added p50",
            "sidecar CPU per tools/list",
        ],
    );
    row(&mut o, &["---", "---", "---", "---"]);
    row(
        &mut o,
        &[
            &f.list[0].show(0),
            &f.list[1].show(0),
            &f.list[2].show(0),
            &f.list[3].show(0),
        ],
    );
    o.push_str("\n## Audit pipeline (one core)\n\n");
    row(
        &mut o,
        &[
            "ack",
            "records/s (256 appenders)",
            "one record alone: p50 µs",
            "p99 µs",
        ],
    );
    row(&mut o, &["---", "---", "---", "---"]);
    for a in f
        .audit
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let g = |k: &str, d: usize| a[k].as_f64().map_or("n/a".into(), |x| format!("{x:.d$}"));
        row(
            &mut o,
            &[
                a["ack"].as_str().unwrap_or("?"),
                &g("records_per_second", 0),
                &g("single_p50_us", 1),
                &g("single_p99_us", 1),
            ],
        );
    }
    o.push_str("\n## Operator (10,000 McpClients, 1,000 McpTools, 2,000 McpPolicies)\n\n");
    if let Some(p) = &f.push {
        let g = |k| ms(p, k).map_or("n/a".into(), |x| format!("{x:.0}"));
        let _ = writeln!(
            o,
            "One McpClient file rewritten → new bundle on the watch (files source, 20 samples): median {} ms, p95 {} ms, slowest {} ms. RSS with the inventory loaded {}, peak {}.\n",
            g("p50_ms"),
            g("p95_ms"),
            g("max_ms"),
            f.operator_rss
                .0
                .map_or("n/a".into(), |v| format!("{v:.0} MiB")),
            f.operator_rss
                .1
                .map_or("n/a".into(), |v| format!("{v:.0} MiB")),
        );
    }
    if let Some(text) = &f.index_scale {
        o.push_str("In process, the index alone (`operator/tests/scale.rs`, release build):\n\n");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.starts_with("running") && !l.starts_with("test result") && !l.trim().is_empty()
            })
            .collect();
        code_block(&mut o, &lines.join("\n"), 20);
    }
    o.push_str("## Micro-benchmarks (criterion, one CPU)\n\n");
    row(
        &mut o,
        &[
            "benchmark",
            "time (criterion's estimate)",
            "heap allocations per op",
        ],
    );
    row(&mut o, &["---", "---", "---"]);
    for (name, est) in &f.criterion {
        let allocs = f
            .allocations
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "–".to_owned(), |(_, a)| format!("{a:.1}"));
        row(&mut o, &[name, est, &allocs]);
    }
    if let (Some(top), dso) = &f.perf {
        o.push_str("\n## Profile of the sidecar under wrk load (perf, 10 s)\n\nSelf time by symbol (`perf report --no-children`):\n\n");
        let top: String = top
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_end()))
            .collect();
        code_block(&mut o, &top, 60);
        if let Some(dso) = dso {
            o.push_str("By shared object:\n\n");
            let dso: String = dso
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{}\n", l.trim_end()))
                .collect();
            code_block(&mut o, &dso, 25);
        }
    }
    if let Some(analysis) = &f.analysis {
        o.push_str("\n## Analysis (hand-written in `bench/analysis.md`, not regenerated)\n\n");
        o.push_str(analysis.trim_end());
        o.push('\n');
    }
    let _ = write!(
        o,
        "\n## Reference\n\nagentgateway on the same kind of 2-core machine (figures from issue #8): ~8,600 tools/call/s per proxy core (116 µs CPU/call), added p50 ≈ 280 µs / p99 ≈ 530 µs at 1,000 req/s, p99 ≈ 1.25 ms at 4,000 req/s, RSS 29 MiB idle / 45 MiB peak.\n"
    );
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| figure | target | measured (`make bench`, {}) |",
        m("date")
    );
    row(&mut table, &["---", "---", "---"]);
    for r in f
        .target_rows()
        .iter()
        .filter(|r| !r[0].starts_with("audit") && !r[0].starts_with("operator"))
    {
        row(&mut table, &[&r[0], &r[1], &format!("{} ({})", r[2], r[3])]);
    }
    if let Some(floor) = &f.floor {
        let _ = writeln!(
            table,
            "\nFor scale, on the same machine a bare pass-through proxy in the sidecar's place adds p50 {} µs and p99 {} µs at 1,000 req/s and uses {} µs CPU per call.",
            floor.added(1000, "p50").show(0),
            floor.added(1000, "p99").show(0),
            floor.cpu_us_per_call.show(1),
        );
    }
    table.push_str("\nDetails, method and the rest of the figures: [`docs/performance.md`](docs/performance.md).\n");
    (o, table)
}
