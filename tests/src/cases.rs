//! A suite of named cases against one real stack: every case runs and is listed PASS/FAIL (a
//! panicking case fails, it does not stop the others), then the suite fails with every failure.
//!
//! ```text
//! let mut cases = Cases::new("server-everything");
//! cases.case("smuggled keys → 400, not forwarded", || smuggling(&stack));   // Result<(), String>
//! cases.finish();                                                           // asserts, listing all
//! ```

use std::{panic::AssertUnwindSafe, time::Instant};

/// `return Err(format!(…))` unless the condition holds: the early exit of a case.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

/// The cases run so far and their results.
#[derive(Debug)]
pub struct Cases {
    label: String,
    results: Vec<(String, Result<(), String>)>,
}

impl Cases {
    /// An empty suite whose lines start with `[label]`.
    pub fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            results: Vec::new(),
        }
    }

    /// Runs one case and prints its line.
    pub fn case(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
            Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".to_owned()))
        });
        eprintln!(
            "[{}] {} {name} ({:.1?}){}",
            self.label,
            if result.is_ok() { "PASS" } else { "FAIL" },
            started.elapsed(),
            result
                .as_ref()
                .err()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        self.results.push((name.to_owned(), result));
    }

    /// Fails with every failed case, once all have run.
    ///
    /// # Panics
    ///
    /// When a case failed.
    pub fn finish(self) {
        let failed: Vec<String> = (self.results.iter())
            .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("  - {name}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "[{}] {} of {} cases failed:\n{}",
            self.label,
            failed.len(),
            self.results.len(),
            failed.join("\n")
        );
    }
}
