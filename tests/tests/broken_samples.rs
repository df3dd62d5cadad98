//! Every fixture in `tests/fixtures/broken/` breaks exactly one invariant of the CRDs, and
//! `mcp_warden_policy::load` must reject it at the field the fixture names.
//!
//! Each fixture starts with
//!
//! ```yaml
//! # expect: spec.tools[0].scopes          (the LoadError path, required, first line)
//! # message: OAuth scope token            (a substring of that error's message, optional)
//! ```
//!
//! and every error the loader reports for it must be at that path, so a fixture cannot pass
//! because of some other, accidental mistake in it.

use mcp_warden_test_support::repo_root;
use mcp_warden_tests::{display, read, yaml_files};
use std::path::PathBuf;

/// Fewer than this many fixtures means some went missing.
const MIN_FIXTURES: usize = 15;

#[derive(Debug)]
struct Fixture {
    path: PathBuf,
    text: String,
    expect: String,
    message: Option<String>,
}

/// Reads the `# expect:` / `# message:` header of a fixture.
fn parse(path: PathBuf) -> Result<Fixture, String> {
    let text = read(&path);
    let mut header = text
        .lines()
        .map_while(|line| line.strip_prefix('#'))
        .map(str::trim);
    let expect = header
        .next()
        .and_then(|first| first.strip_prefix("expect:"))
        .map(|path| path.trim().to_owned())
        .filter(|path| !path.is_empty())
        .ok_or_else(|| {
            format!(
                "{}: the first line must be `# expect: <field path>`",
                display(&path)
            )
        })?;
    let message = header
        .find_map(|line| line.strip_prefix("message:"))
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty());
    Ok(Fixture {
        path,
        text,
        expect,
        message,
    })
}

fn fixtures() -> Vec<PathBuf> {
    yaml_files(&repo_root().join("tests/fixtures/broken"))
}

#[test]
fn every_fixture_declares_the_expected_error() {
    let files = fixtures();
    assert!(
        files.len() >= MIN_FIXTURES,
        "expected at least {MIN_FIXTURES} broken samples in tests/fixtures/broken/, found {}",
        files.len()
    );
    let problems: Vec<String> = files.into_iter().filter_map(|f| parse(f).err()).collect();
    assert!(
        problems.is_empty(),
        "fixtures without an expectation:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_broken_sample_is_rejected_at_its_field() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in fixtures() {
        let fixture = match parse(file) {
            Ok(fixture) => fixture,
            Err(problem) => {
                failures.push(problem);
                continue;
            }
        };
        checked += 1;
        let name = display(&fixture.path);
        let errors = match mcp_warden_policy::load(&name, &fixture.text) {
            Ok(loaded) => {
                failures.push(format!(
                    "{name}: ACCEPTED ({} object(s)); expected an error at `{}`{}",
                    loaded.len(),
                    fixture.expect,
                    fixture
                        .message
                        .as_ref()
                        .map(|m| format!(" containing {m:?}"))
                        .unwrap_or_default()
                ));
                continue;
            }
            Err(errors) => errors.0,
        };
        let listing = || {
            errors
                .iter()
                .map(|e| format!("\n      `{}`: {}", e.path, e.message))
                .collect::<String>()
        };
        let at_path: Vec<_> = errors.iter().filter(|e| e.path == fixture.expect).collect();
        if at_path.is_empty() {
            failures.push(format!(
                "{name}: no error at `{}`; got:{}",
                fixture.expect,
                listing()
            ));
        } else if let Some(wanted) = &fixture.message
            && !at_path.iter().any(|e| e.message.contains(wanted.as_str()))
        {
            failures.push(format!(
                "{name}: the error at `{}` does not mention {wanted:?}; got:{}",
                fixture.expect,
                listing()
            ));
        } else if errors.len() != at_path.len() {
            failures.push(format!(
                "{name}: errors at other paths than `{}` (the fixture should break one thing):{}",
                fixture.expect,
                listing()
            ));
        }
    }
    assert!(checked > 0, "no fixture was checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} broken samples were not rejected as expected:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
