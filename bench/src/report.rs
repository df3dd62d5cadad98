//! The report: reads a results folder of `bench/run.sh` and writes `docs/performance.md` and the
//! README table (between `<!-- bench:begin -->` and `<!-- bench:end -->`).
//!
//! ```text
//! <results>/wrk-*.txt, oha-*.json, list-*.json, cpu-*.txt   ──► Spread{median, min, max} per figure
//!   (sides: direct, through the sidecar, and floor: through a bare pass-through proxy)
//! <results>/rss-*, revocation-*.json, operator-*, audit.json  ──► single figures
//! <results>/criterion.txt, perf-*.txt, machine.txt            ──► copied in (parsed / verbatim)
//!   ──► targets table (met / missed) + method + numbers ──► performance.md, README block
//! ```

use serde_json::Value;
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

/// Median and range of the repetitions of one figure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        }
    }

    /// `median (min–max)` with `decimals`.
    pub fn show(&self, decimals: usize) -> String {
        if self.n == 0 {
            return "n/a".into();
        }
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// A results folder.
struct Results {
    dir: PathBuf,
    machine: BTreeMap<String, String>,
}

/// The folder of the A/B runs with `ack: written` (the main folder has `ack: durable`).
pub const WRITTEN_DIR: &str = "ack-written";

impl Results {
    fn text(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }

    fn json(&self, name: &str) -> Option<Value> {
        serde_json::from_str(&self.text(name)?).ok()
    }

    fn number(&self, name: &str) -> Option<f64> {
        self.text(name)?.trim().parse().ok()
    }

    fn reps(&self) -> usize {
        (1..)
            .take_while(|r| self.dir.join(format!("wrk-direct-{r}.txt")).exists())
            .count()
    }

    fn clk_tck(&self) -> f64 {
        self.machine
            .get("clk_tck")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100.0)
    }

    /// Sidecar CPU seconds of a `cpu-*.txt` (`ticks_before ticks_after`).
    fn cpu_seconds(&self, name: &str) -> Option<f64> {
        let text = self.text(name)?;
        let mut it = text
            .split_whitespace()
            .filter_map(|t| t.parse::<f64>().ok());
        let (a, b) = (it.next()?, it.next()?);
        Some((b - a) / self.clk_tck())
    }
}

/// `Requests/sec` and the request count of a wrk output.
fn wrk_figures(text: &str) -> Option<(f64, f64)> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((rps, requests))
}

/// Latency percentile `p` (`p50`, `p99.9`, …) of an oha JSON output, in µs.
fn oha_us(v: &Value, p: &str) -> Option<f64> {
    v["latencyPercentiles"][p].as_f64().map(|s| s * 1e6)
}

/// Responses of an oha output (every status) and the non-200 among them.
fn oha_counts(v: &Value) -> (f64, f64) {
    let Some(dist) = v["statusCodeDistribution"].as_object() else {
        return (0.0, 0.0);
    };
    let total: f64 = dist.values().filter_map(Value::as_f64).sum();
    let ok = dist.get("200").and_then(Value::as_f64).unwrap_or(0.0);
    (total, total - ok)
}

/// The criterion estimates (`name → middle estimate`, as printed) of a `cargo bench` output.
pub fn criterion_estimates(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut last_name = String::new();
    for line in text.lines() {
        if let Some((before, after)) = line.split_once("time:") {
            let name = if before.trim().is_empty() {
                last_name.clone()
            } else {
                before.trim().to_owned()
            };
            let inner = after.trim().trim_start_matches('[').trim_end_matches(']');
            let parts: Vec<&str> = inner.split_whitespace().collect();
            if parts.len() == 6 {
                out.push((name, format!("{} {}", parts[2], parts[3])));
            }
        } else if !line.trim().is_empty()
            && !line.starts_with(' ')
            && !line.contains("Benchmarking")
            && !line.starts_with("Found")
            && !line.starts_with("Gnuplot")
        {
            last_name = line.trim().to_owned();
        }
    }
    out
}

/// One row of the targets table.
#[derive(Debug)]
pub struct Target {
    /// The figure.
    pub what: String,
    /// The goal, as text.
    pub target: String,
    /// The measured value, as text.
    pub measured: String,
    /// Whether it was met (`None`: not measured).
    pub met: Option<bool>,
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

/// Writes `doc` and the README block from the results in `results`.
pub fn write(results: &Path, doc: &Path, readme: &Path) -> Result<(), String> {
    let machine = std::fs::read_to_string(results.join("machine.txt"))
        .map_err(|e| format!("{}: {e}", results.join("machine.txt").display()))?
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let r = Results {
        dir: results.to_owned(),
        machine,
    };
    let (body, table) = crate::report_render::render(&r.figures(), &r.machine, results);
    std::fs::write(doc, body).map_err(|e| format!("{}: {e}", doc.display()))?;
    let text = std::fs::read_to_string(readme).map_err(|e| format!("{}: {e}", readme.display()))?;
    let (begin, end) = ("<!-- bench:begin -->", "<!-- bench:end -->");
    let new = match (text.find(begin), text.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{begin}\n{table}{}", &text[..b], &text[e..])
        }
        _ => return Err(format!("{} has no {begin} … {end} block", readme.display())),
    };
    std::fs::write(readme, new).map_err(|e| format!("{}: {e}", readme.display()))
}

/// The A/B figures of one audit acknowledgement level.
#[derive(Debug, Default)]
pub struct Load {
    /// wrk closed loop, req/s: direct, through.
    pub wrk_direct: Spread,
    /// …
    pub wrk_through: Spread,
    /// Sidecar CPU µs per tools/call under wrk.
    pub cpu_us_per_call: Spread,
    /// 1e6 / cpu_us_per_call.
    pub per_core: Spread,
    /// Sidecar CPU utilization during the wrk runs (1.0 = one core).
    pub cpu_util: Spread,
    /// Per rate: (rate, percentile, added µs, direct µs, through µs).
    pub latency: Vec<(u32, &'static str, Spread, Spread, Spread)>,
    /// Per rate: sidecar CPU µs per call, non-200 responses (through), achieved req/s (through).
    pub rate_cpu: Vec<(u32, Spread, f64, Spread)>,
}

impl Load {
    /// The added latency at `rate` and percentile `p`.
    pub fn added(&self, rate: u32, p: &str) -> Spread {
        self.latency
            .iter()
            .find(|(r, q, ..)| *r == rate && *q == p)
            .map(|(_, _, a, _, _)| *a)
            .unwrap_or_default()
    }
}

/// Every figure of a run, ready to print.
#[derive(Debug, Default)]
pub struct Figures {
    /// The A/B runs with `ack: durable` (the issue's setting).
    pub durable: Load,
    /// The A/B runs with `ack: written`, when the run has them.
    pub written: Option<Load>,
    /// The same runs through a bare pass-through proxy (`bench-tool passthrough`): what any proxy
    /// in the sidecar's place costs on this machine.
    pub floor: Option<Load>,
    /// RSS idle and peak, MiB.
    pub rss_idle: Option<f64>,
    /// Idle RSS split: anonymous (the sidecar's own), file-backed (code, shared per node), MiB.
    pub rss_idle_split: (Option<f64>, Option<f64>),
    /// …
    pub rss_peak: Option<f64>,
    /// Revocation samples (file, operator).
    pub revocation: Vec<(String, Value)>,
    /// tools/list 1,000 tools: direct p50 µs, through p50 µs, added, CPU µs per list.
    pub list: [Spread; 4],
    /// Operator push samples, RSS loaded / peak MiB, in-process index output.
    pub push: Option<Value>,
    /// …
    pub operator_rss: (Option<f64>, Option<f64>),
    /// …
    pub index_scale: Option<String>,
    /// audit.json.
    pub audit: Option<Value>,
    /// criterion (name, estimate).
    pub criterion: Vec<(String, String)>,
    /// Heap allocations per operation of the criterion benchmarks (name, count).
    pub allocations: Vec<(String, f64)>,
    /// The shapes of issue #21 (`big`: a 100 KiB result, `progress`: 100 SSE progress events):
    /// (shape, percentile, added through − direct, added by the floor, above the floor), µs.
    pub shapes: Vec<(&'static str, &'static str, Spread, Spread, Spread)>,
    /// perf-top.txt, perf-dso.txt.
    pub perf: (Option<String>, Option<String>),
    /// Targets met or missed.
    pub targets: Vec<Target>,
    /// `bench/analysis.md` (hand-written hot spots and findings), when present.
    pub analysis: Option<String>,
}

impl Figures {
    /// The targets table rows as `(what, target, measured, verdict)`.
    pub fn target_rows(&self) -> Vec<[String; 4]> {
        self.targets
            .iter()
            .map(|t| {
                [
                    t.what.clone(),
                    t.target.clone(),
                    t.measured.clone(),
                    verdict(t.met).to_owned(),
                ]
            })
            .collect()
    }
}

impl Results {
    /// The results in the sub-folder `name` (same machine).
    fn sub(&self, name: &str) -> Results {
        Results {
            dir: self.dir.join(name),
            machine: self.machine.clone(),
        }
    }

    /// The A/B figures of `side` (`through`, or `floor` for the bare proxy) against `direct`;
    /// `ticks` prefixes the CPU tick files of that side's process.
    fn load(&self, side: &str, ticks: &str) -> Load {
        let reps = self.reps();
        let mut f = Load::default();
        let (mut direct, mut through, mut cpu, mut util) = (vec![], vec![], vec![], vec![]);
        for rep in 1..=reps {
            let d = self
                .text(&format!("wrk-direct-{rep}.txt"))
                .as_deref()
                .and_then(wrk_figures);
            let t = self
                .text(&format!("wrk-{side}-{rep}.txt"))
                .as_deref()
                .and_then(wrk_figures);
            let secs = self.cpu_seconds(&format!("{ticks}-wrk-{rep}.txt"));
            if let Some((rps, _)) = d {
                direct.push(rps);
            }
            if let (Some((rps, requests)), Some(secs)) = (t, secs) {
                through.push(rps);
                cpu.push(secs * 1e6 / requests);
                util.push(secs * rps / requests);
            }
        }
        f.wrk_direct = Spread::of(&direct);
        f.wrk_through = Spread::of(&through);
        f.cpu_us_per_call = Spread::of(&cpu);
        f.per_core = Spread::of(&cpu.iter().map(|c| 1e6 / c).collect::<Vec<_>>());
        f.cpu_util = Spread::of(&util);
        let rates: Vec<u32> = self
            .machine
            .get("reps")
            .and_then(|l| l.split("rates: ").nth(1))
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for &rate in &rates {
            let runs: Vec<(Value, Value, Option<f64>)> = (1..=reps)
                .filter_map(|rep| {
                    Some((
                        self.json(&format!("oha-{rate}-direct-{rep}.json"))?,
                        self.json(&format!("oha-{rate}-{side}-{rep}.json"))?,
                        self.cpu_seconds(&format!("{ticks}-oha-{rate}-{rep}.txt")),
                    ))
                })
                .collect();
            for p in ["p50", "p90", "p99", "p99.9"] {
                let pairs: Vec<(f64, f64)> = runs
                    .iter()
                    .filter_map(|(d, t, _)| Some((oha_us(d, p)?, oha_us(t, p)?)))
                    .collect();
                f.latency.push((
                    rate,
                    p,
                    Spread::of(&pairs.iter().map(|(d, t)| t - d).collect::<Vec<_>>()),
                    Spread::of(&pairs.iter().map(|(d, _)| *d).collect::<Vec<_>>()),
                    Spread::of(&pairs.iter().map(|(_, t)| *t).collect::<Vec<_>>()),
                ));
            }
            let mut cpu = vec![];
            let mut achieved = vec![];
            let mut bad = 0.0;
            for (_, t, secs) in &runs {
                let (total, not_ok) = oha_counts(t);
                bad += not_ok;
                if let Some(rps) = t["summary"]["requestsPerSec"].as_f64() {
                    achieved.push(rps);
                }
                if let Some(secs) = secs
                    && total > 0.0
                {
                    cpu.push(secs * 1e6 / total);
                }
            }
            f.rate_cpu
                .push((rate, Spread::of(&cpu), bad, Spread::of(&achieved)));
        }
        f
    }

    /// `shape-<shape>-<side>-<rep>.json` (oha) → the added latency of the sidecar and of the
    /// floor per repetition, and the sidecar's above the floor's.
    fn shapes(&self) -> Vec<(&'static str, &'static str, Spread, Spread, Spread)> {
        let mut out = Vec::new();
        for shape in ["big", "progress"] {
            for p in ["p50", "p99"] {
                let mut added = Vec::new();
                let mut floor = Vec::new();
                for rep in 1..=self.reps().max(1) {
                    let us = |side: &str| {
                        oha_us(&self.json(&format!("shape-{shape}-{side}-{rep}.json"))?, p)
                    };
                    if let (Some(d), Some(t)) = (us("direct"), us("through")) {
                        added.push(t - d);
                        if let Some(fl) = us("floor") {
                            floor.push(fl - d);
                        }
                    }
                }
                if added.is_empty() {
                    continue;
                }
                let above: Vec<f64> = added.iter().zip(&floor).map(|(a, f)| a - f).collect();
                out.push((
                    shape,
                    p,
                    Spread::of(&added),
                    Spread::of(&floor),
                    Spread::of(&above),
                ));
            }
        }
        out
    }

    fn figures(&self) -> Figures {
        let reps = self.reps();
        let written = self.sub(WRITTEN_DIR);
        let mut f = Figures {
            durable: self.load("through", "cpu"),
            written: (written.reps() > 0).then(|| written.load("through", "cpu")),
            floor: self
                .dir
                .join("wrk-floor-1.txt")
                .exists()
                .then(|| self.load("floor", "cpu-floor")),
            ..Figures::default()
        };
        f.shapes = self.shapes();
        let mib = |name: &str| self.number(name).map(|kb| kb / 1024.0);
        f.rss_idle = mib("rss-idle-kb.txt");
        f.rss_idle_split = (mib("rss-idle-anon-kb.txt"), mib("rss-idle-file-kb.txt"));
        f.rss_peak = mib("rss-peak-kb.txt");
        for mode in ["file", "operator"] {
            if let Some(v) = self.json(&format!("revocation-{mode}.json")) {
                f.revocation.push((mode.to_owned(), v));
            }
        }
        let mut list: [Vec<f64>; 4] = Default::default();
        for rep in 1..=reps {
            let (Some(d), Some(t)) = (
                self.json(&format!("list-direct-{rep}.json")),
                self.json(&format!("list-through-{rep}.json")),
            ) else {
                continue;
            };
            if let (Some(dp), Some(tp)) = (oha_us(&d, "p50"), oha_us(&t, "p50")) {
                list[0].push(dp);
                list[1].push(tp);
                list[2].push(tp - dp);
            }
            if let Some(secs) = self.cpu_seconds(&format!("cpu-list-{rep}.txt")) {
                let (total, _) = oha_counts(&t);
                if total > 0.0 {
                    list[3].push(secs * 1e6 / total);
                }
            }
        }
        f.list = list.map(|v| Spread::of(&v));
        f.push = self.json("operator-push.json");
        f.operator_rss = (
            mib("operator-rss-loaded-kb.txt"),
            mib("operator-rss-peak-kb.txt"),
        );
        f.index_scale = self.text("operator-index-scale.txt");
        f.audit = self.json("audit.json");
        let criterion = self.text("criterion.txt");
        f.criterion = criterion
            .as_deref()
            .map(criterion_estimates)
            .unwrap_or_default();
        f.allocations = criterion
            .as_deref()
            .map(crate::alloc_count::parse)
            .unwrap_or_default();
        f.perf = (self.text("perf-top.txt"), self.text("perf-dso.txt"));
        f.targets = crate::report_render::targets(&f);
        f.analysis = self
            .dir
            .parent()
            .and_then(Path::parent)
            .and_then(|bench| std::fs::read_to_string(bench.join("analysis.md")).ok())
            .map(|t| {
                t.lines()
                    .skip_while(|l| l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        f
    }
}

/// Appends `| a | b | … |` to `out`.
pub fn row(out: &mut String, cells: &[&str]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}
