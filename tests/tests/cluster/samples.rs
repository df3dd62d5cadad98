//! What the API server itself says about our CRDs: every broken sample refused with the loader's
//! words, the examples accepted, `kubectl explain` documenting every field.

use mcp_warden_tests::{cluster::ControlPlane, display, read, repo_root, yaml_files};

/// Fixtures the API server refuses in other words than the client-side loader, and why.
const SERVER_WORDS: [(&str, &str, &str); 3] = [
    (
        "tool-bad-namespace.yaml",
        r#"namespaces "payments.prod" not found"#,
        "admission (NamespaceLifecycle) runs before validation: a namespace that cannot exist is \
         not found",
    ),
    (
        "tool-wrong-api-version.yaml",
        r#"no matches for kind "McpTool" in version "mcpwarden.io/v1""#,
        "kubectl maps the kind through the server's discovery before sending (and the server \
         itself answers 404 to the raw POST)",
    ),
    (
        "wrong-kind.yaml",
        r#"no matches for kind "McpServer" in version "mcpwarden.io/v1alpha1""#,
        "as above",
    ),
];

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map_while(|l| l.strip_prefix('#'))
        .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty())
}

pub(crate) fn broken_samples(cp: &ControlPlane) -> Result<(), String> {
    for ns in ["payments", "agents", "demo", "analytics"] {
        cp.kubectl(&["create", "namespace", ns])?;
    }
    let files = yaml_files(&repo_root().join("tests/fixtures/broken"));
    if files.len() < 15 {
        return Err(format!("only {} broken samples", files.len()));
    }
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(file);
        let expect = header(&text, "expect:").ok_or(format!("{name}: no `# expect:`"))?;
        let words = header(&text, "message:");
        let server = cp
            .kubectl_refused(&["apply", "-f", &file.to_string_lossy()])
            .map_err(|e| format!("{}: {e}", display(file)))?;
        let server = server.trim().to_owned();
        let client = match mcp_warden_policy::load(&name, &text) {
            Ok(_) => "ACCEPTED".to_owned(),
            Err(errors) => errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let wanted: Vec<String> = match SERVER_WORDS.iter().find(|(f, _, _)| *f == name) {
            Some((_, words, _)) => vec![(*words).to_owned()],
            None => std::iter::once(expect.clone())
                .chain(words.clone())
                .collect(),
        };
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !server.contains(w.as_str()))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{name}: the API server's refusal does not mention {missing:?}:\n    {server}"
            ));
        }
        // The server's own answer to the wrong kind or version, without kubectl's mapping.
        if name == "wrong-kind.yaml" || name == "tool-wrong-api-version.yaml" {
            let doc = &mcp_warden_tests::yaml_documents(&name, &text)[0];
            let api = doc["apiVersion"].as_str().unwrap_or_default();
            let plural = format!(
                "{}s",
                doc["kind"].as_str().unwrap_or_default().to_lowercase()
            );
            let path = format!("/apis/{api}/namespaces/payments/{plural}");
            let raw =
                cp.kubectl_refused(&["create", "--raw", &path, "-f", &file.to_string_lossy()])?;
            if !raw.contains("NotFound") && !raw.contains("could not find the requested resource") {
                failures.push(format!("{name}: POST {path} was not answered 404: {raw}"));
            }
        }
        let first_line = server
            .lines()
            .find(|l| l.contains(&expect) || l.contains("not found") || l.contains("no matches"))
            .unwrap_or_else(|| server.lines().next().unwrap_or_default());
        table.push(format!(
            "  {name}\n      server: {}\n      client: {client}",
            first_line.chars().take(220).collect::<String>()
        ));
    }
    eprintln!(
        "broken samples, the API server's words vs the client-side loader's:\n{}",
        table.join("\n")
    );
    let left = cp.kubectl(&["get", "mcptools,mcpclients,mcppolicies", "-A", "-o", "name"])?;
    if !left.trim().is_empty() {
        failures.push(format!("refused samples left objects behind:\n{left}"));
    }
    if failures.is_empty() {
        eprintln!("{} broken samples refused by the API server", files.len());
        Ok(())
    } else {
        Err(format!(
            "{} of {} broken samples:\n  {}",
            failures.len(),
            files.len(),
            failures.join("\n  ")
        ))
    }
}

pub(crate) fn examples(cp: &ControlPlane) -> Result<(), String> {
    let mut created = 0;
    for dir in ["examples/payments/", "examples/everything/"] {
        let out = cp.kubectl(&["apply", "-f", dir])?;
        created += out.lines().filter(|l| l.ends_with(" created")).count();
        if out.lines().any(|l| !l.ends_with(" created")) {
            return Err(format!("kubectl apply -f {dir}:\n{out}"));
        }
    }
    let names = cp.kubectl(&["get", "mcptools,mcpclients,mcppolicies", "-A", "-o", "name"])?;
    if names.lines().count() != created {
        return Err(format!(
            "{created} created, but the cluster holds:\n{names}"
        ));
    }
    eprintln!("{created} objects of examples/ created");
    Ok(())
}

pub(crate) fn explain(cp: &ControlPlane) -> Result<(), String> {
    let out = cp.kubectl(&["explain", "mcpclient.spec"])?;
    let schema = mcp_warden_tests::crd_schema("McpClient").ok_or("no McpClient schema")?;
    let fields = schema["properties"]["spec"]["properties"]
        .as_object()
        .ok_or("no spec properties")?;
    let text: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut missing = Vec::new();
    for (name, field) in fields {
        let first_words: String = field["description"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .take(6)
            .collect::<Vec<_>>()
            .join(" ");
        if !out
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{name}\t")))
            || first_words.is_empty()
            || !text.contains(&first_words)
        {
            missing.push(format!("{name} ({first_words:?})"));
        }
    }
    if !out.contains("KIND:") || !out.contains("McpClient") || !missing.is_empty() {
        return Err(format!(
            "kubectl explain mcpclient.spec lacks {missing:?}:\n{out}"
        ));
    }
    eprintln!(
        "kubectl explain mcpclient.spec documents {} fields",
        fields.len()
    );
    Ok(())
}
