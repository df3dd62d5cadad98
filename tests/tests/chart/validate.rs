//! Every option set renders, lints strict and validates; values that break the schema are refused.

use super::*;

#[test]
fn every_option_set_passes_kubernetes_validate_strict_for_1_29_and_1_36() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-renders");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = kubernetes_validate().unwrap_or_else(|m| panic!("{m}"));
    let renders = render_all();
    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (i, (name, render)) in renders.iter().enumerate() {
        let file = dir.join(format!("render-{i}.yaml"));
        std::fs::write(&file, render.yaml()).unwrap();
        for o in &render.objects {
            let kind = o["kind"].as_str().unwrap();
            if !FOREIGN_KINDS.contains(&kind) {
                let id = format!(
                    "{}/{}",
                    kind.to_lowercase(),
                    o["metadata"]["name"].as_str().unwrap()
                );
                expected.push((file.clone(), id, *name));
            }
        }
        files.push(file);
    }
    // The chart's crds/, exactly as Helm loads them.
    for (file_name, text) in &renders[0].1.crds {
        let file = dir.join(file_name);
        std::fs::write(&file, text).unwrap();
        let crd: Value = serde_yaml::from_str(text).unwrap();
        let id = format!(
            "customresourcedefinition/{}",
            crd["metadata"]["name"].as_str().unwrap()
        );
        expected.push((file.clone(), id, "crds/"));
        files.push(file);
    }
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&bin)
            .args(["--strict", "-k", version])
            .args(&files)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {version}:\n{text}"
        );
        let short = version.rsplit_once('.').unwrap().0;
        for (file, id, name) in &expected {
            let passed = text.lines().any(|l| {
                l.contains(&*file.to_string_lossy())
                    && l.contains(&format!("passed for resource {id} against version {short}"))
            });
            assert!(
                passed,
                "{id} ({name}) not reported as passed for {version}:\n{text}"
            );
        }
        // Only the foreign kinds may be skipped.
        for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
            assert!(
                FOREIGN_KINDS
                    .iter()
                    .any(|k| line.contains(&format!("kind {k} "))),
                "kubernetes-validate skipped a kind it should know: {line}"
            );
        }
    }
}

#[test]
fn every_option_set_lints_strict_without_warnings() {
    let mut jobs = Vec::new();
    for (_, values) in option_sets() {
        for kube in ["v1.29.0", "v1.36.0"] {
            jobs.push(
                json!({"op": "lint", "values": values, "strict": true, "kube_version": kube}),
            );
        }
    }
    for (job, result) in jobs.iter().zip(helm::run(&jobs)) {
        assert_eq!(result["ok"], true, "{job}: {result}");
        let report = &result["report"];
        assert_eq!(report["total_charts_linted"], 1, "{report}");
        assert_eq!(report["errors"], json!([]), "{job}: {report}");
        // Severity 1 is information ("icon is recommended"); 2 warning, 3 error.
        let serious: Vec<&Value> = report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "{job}: lint warnings {serious:?}");
    }
}

#[test]
fn values_that_break_the_schema_are_refused() {
    let cases = [
        (json!({"replicas": 2}), "additional properties 'replicas'"),
        (
            json!({"webhook": {"failurePolicy": "Fail", "path": "/x"}}),
            "'path' not allowed",
        ),
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (json!({"replicaCount": 0}), "minimum: got 0, want 1"),
        (
            json!({"webhook": {"failurePolicy": "Sometimes"}}),
            "'Fail', 'Ignore'",
        ),
        (
            json!({"webhook": {"reinvocationPolicy": "Always"}}),
            "/webhook/reinvocationPolicy",
        ),
        (
            json!({"webhook": {"timeoutSeconds": 31}}),
            "/webhook/timeoutSeconds",
        ),
        (json!({"antiAffinity": "maybe"}), "/antiAffinity"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"certManager": {"enabled": "yes"}}),
            "/certManager/enabled",
        ),
        (
            json!({"certManager": {"issuerRef": {"kind": "Vault"}}}),
            "/certManager/issuerRef/kind",
        ),
        (
            json!({"sidecar": {"memoryLimit": "lots"}}),
            "/sidecar/memoryLimit",
        ),
        (json!({"ports": {"push": 70000}}), "/ports/push"),
        (
            json!({"networkPolicy": {"namespaces": ["Not_A_Name"]}}),
            "/networkPolicy/namespaces/0",
        ),
        (
            json!({"serviceMonitor": {"interval": "often"}}),
            "/serviceMonitor/interval",
        ),
        (
            json!({"tolerations": [{"key": "k", "operatorr": "Exists"}]}),
            "'operatorr' not allowed",
        ),
        (json!({"fullnameOverride": "Bad_Name"}), "/fullnameOverride"),
    ];
    let mut jobs: Vec<Value> = cases
        .iter()
        .map(|(values, _)| json!({"op": "schema", "values": values}))
        .collect();
    jobs.extend(cases.iter().map(|(values, _)| helm::render_job(values)));
    let results = helm::run(&jobs);
    let (schema, render) = results.split_at(cases.len());
    for (((values, needle), s), r) in cases.iter().zip(schema).zip(render) {
        assert_eq!(s["ok"], false, "the schema accepted {values}");
        let error = s["error"].as_str().unwrap();
        assert!(
            error.contains(needle),
            "{values}: expected {needle:?} in {error:?}"
        );
        // Installing is refused too (Helm validates values before rendering).
        assert_eq!(r["ok"], false, "rendering accepted {values}");
    }
    // Defaults pass the schema; a write-everything-twice mistake the schema cannot see is caught
    // by the template.
    let results = helm::run(&[
        json!({"op": "schema", "values": {}}),
        helm::render_job(&json!({"replicaCount": 2, "operator": {"leaderElection": false}})),
    ]);
    assert_eq!(results[0]["ok"], true, "{}", results[0]);
    assert!(
        results[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("set replicaCount to 1")),
        "{}",
        results[1]
    );
}
