//! Heap allocations per operation (issue #21: "the bench reports heap allocations per call so
//! each change shows"). A bench binary installs [`Counting`] as its global allocator; [`per_op`]
//! runs an operation many times and divides.
//!
//! ```text
//! #[global_allocator] static A: Counting = Counting;   (benches/hot_path.rs)
//! per_op(1_000, || op()) ──► allocations (alloc + realloc calls) per run, as `allocations: <name>: <n>`
//! ```
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations (`alloc`, `alloc_zeroed`, `realloc`).
#[derive(Debug)]
pub struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; the count is a relaxed atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations so far (all threads; 0 unless [`Counting`] is the global allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations per run of `op`, over `runs` runs after one warm-up run. Other threads of the
/// process count too: run it where nothing else allocates meanwhile.
pub fn per_op<R>(runs: u32, mut op: impl FnMut() -> R) -> f64 {
    std::hint::black_box(op());
    let before = allocations();
    for _ in 0..runs {
        std::hint::black_box(op());
    }
    (allocations() - before) as f64 / f64::from(runs.max(1))
}

/// The line `per_op`'s result is printed as, read back by the report.
pub fn line(name: &str, per_op: f64) -> String {
    format!("allocations: {name}: {per_op:.1}")
}

/// `(name, allocations per op)` of every [`line`] in a bench output.
pub fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("allocations: ")?;
            let (name, n) = rest.rsplit_once(": ")?;
            Some((name.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_read_back() {
        let text = format!(
            "noise\n{}\n{}\n",
            super::line("audit/append (a: b)", 3.0),
            super::line("x", 0.25)
        );
        assert_eq!(
            super::parse(&text),
            vec![
                ("audit/append (a: b)".to_owned(), 3.0),
                ("x".to_owned(), 0.2)
            ]
        );
    }
}
