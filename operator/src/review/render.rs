//! A [`ReviewReport`] as Markdown (for people), CSV (RFC 4180, one row per McpClient, for
//! spreadsheets) or JSON (schema version 1, for tools).
//!
//! ```text
//! ReviewReport ──markdown──► summary table + one section per client (grants table, unused)
//!              ──csv──────► header + one CRLF-terminated row per client, lists joined by "; "
//!              ──json─────► pretty JSON, every field present (null when unknown)
//! ```

use super::model::{ClientReview, Grant, ReviewReport};
use jiff::Timestamp;
use mcp_warden_crds::PolicyMode;
use std::fmt::Write;

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for people.
    Markdown,
    /// RFC 4180, one row per McpClient.
    Csv,
    /// The report as JSON (schema version 1).
    Json,
}

/// Renders `report` in `format`.
pub fn render(report: &ReviewReport, format: Format) -> String {
    match format {
        Format::Markdown => markdown(report),
        Format::Csv => csv(report),
        Format::Json => json(report),
    }
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

fn flags(c: &ClientReview) -> String {
    c.flags
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `tool via policy [scopes]`, with `(Audit)` for audit-only grants.
fn grant_text(g: &Grant) -> String {
    let audit = if g.mode == PolicyMode::Audit {
        " (Audit)"
    } else {
        ""
    };
    format!(
        "{} via {}{audit} [{}]",
        g.tool,
        g.policy,
        g.scopes.join(" ")
    )
}

/// The report as pretty JSON, newline-terminated.
pub fn json(report: &ReviewReport) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
    text.push('\n');
    text
}

/// One RFC 4180 field: quoted when it holds a comma, a quote, CR or LF (quotes doubled).
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Columns of the CSV output.
pub const CSV_HEADER: [&str; 14] = [
    "namespace",
    "name",
    "owner",
    "phase",
    "flags",
    "expires_at",
    "review_due",
    "last_reviewed_at",
    "last_reviewed_by",
    "last_seen",
    "calls_24h",
    "grants",
    "unused_grants",
    "description",
];

/// The report as RFC 4180 CSV: a header, then one CRLF-terminated row per McpClient.
pub fn csv(report: &ReviewReport) -> String {
    let mut out = String::new();
    let mut row = |fields: Vec<String>| {
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    };
    row(CSV_HEADER.iter().map(|h| (*h).to_owned()).collect());
    for c in &report.clients {
        row(vec![
            c.namespace.clone(),
            c.name.clone(),
            c.owner.clone(),
            format!("{:?}", c.phase),
            flags(c),
            time(c.expires_at),
            time(c.review_due),
            time(c.last_reviewed_at),
            c.last_reviewed_by.clone().unwrap_or_default(),
            time(c.last_seen),
            c.calls_24h.map(|n| n.to_string()).unwrap_or_default(),
            c.grants
                .iter()
                .map(grant_text)
                .collect::<Vec<_>>()
                .join("; "),
            c.unused_grants.join("; "),
            c.description.clone().unwrap_or_default(),
        ]);
    }
    out
}

/// A Markdown table cell: `|` escaped, `<` as an entity (no HTML from CR text), line breaks
/// flattened, `—` when empty.
fn cell(value: &str) -> String {
    if value.is_empty() {
        return "—".into();
    }
    value
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace(['\r', '\n'], " ")
}

/// A name in a code span (so `refund_*` is not read as emphasis), as a table cell.
fn code(value: &str) -> String {
    if value.is_empty() || value.contains('`') {
        return cell(value);
    }
    format!("`{}`", value.replace('|', "\\|").replace(['\r', '\n'], " "))
}

/// The report as Markdown: a summary table, then a section per client.
pub fn markdown(report: &ReviewReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Access review, {}\n", report.generated_at);
    let flagged = report
        .clients
        .iter()
        .filter(|c| !c.flags.is_empty())
        .count();
    let _ = writeln!(
        out,
        "{} McpClient(s), {flagged} flagged. A grant is unused when no call of its tool was \
         reported in the last {} days.\n",
        report.clients.len(),
        report.unused_after_days
    );
    for p in &report.problems {
        let _ = writeln!(out, "> **Problem:** {}\n", cell(p));
    }
    out.push_str(
        "| Client | Owner | Phase | Flags | Expires | Review due | Last seen | Calls 24h |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for c in &report.clients {
        let _ = writeln!(
            out,
            "| {}/{} | {} | {:?} | {} | {} | {} | {} | {} |",
            cell(&c.namespace),
            cell(&c.name),
            cell(&c.owner),
            c.phase,
            cell(&flags(c)),
            cell(&time(c.expires_at)),
            cell(&time(c.review_due)),
            cell(&time(c.last_seen)),
            cell(&c.calls_24h.map(|n| n.to_string()).unwrap_or_default()),
        );
    }
    for c in &report.clients {
        let _ = writeln!(out, "\n## {}/{}\n", c.namespace, c.name);
        if let Some(d) = &c.description {
            let _ = writeln!(out, "{}\n", cell(d));
        }
        let reviewed = match (&c.last_reviewed_at, &c.last_reviewed_by) {
            (Some(at), Some(by)) => format!("{at} by {}", cell(by)),
            (Some(at), None) => at.to_string(),
            (None, _) => "never".into(),
        };
        let _ = writeln!(
            out,
            "- Owner: {}\n- Last reviewed: {reviewed}\n- Flags: {}",
            cell(&c.owner),
            cell(&flags(c))
        );
        if c.grants.is_empty() {
            out.push_str("\nNo policy grants this client a tool.\n");
            continue;
        }
        out.push_str("\n| Tool | Policy | Mode | Scopes | Last used |\n|---|---|---|---|---|\n");
        for g in &c.grants {
            let _ = writeln!(
                out,
                "| {} | {} | {:?} | {} | {} |",
                code(&g.tool),
                code(&g.policy),
                g.mode,
                cell(&g.scopes.join(" ")),
                cell(&time(g.last_used)),
            );
        }
        if !c.unused_grants.is_empty() {
            let _ = writeln!(
                out,
                "\nUnused for {} days: {}",
                report.unused_after_days,
                c.unused_grants
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(csv_field("plain text; ok"), "plain text; ok");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell("<img src=x>"), "&lt;img src=x>");
        assert_eq!(cell(""), "—");
        assert_eq!(code("ns/t/refund_*"), "`ns/t/refund_*`");
        assert_eq!(code("a`b"), "a`b");
    }
}
