//! The tokio runtime, sized for a sidecar.
//!
//! Each worker thread costs memory beyond its stack: glibc gives busy threads their own malloc
//! arena, which keeps what it once held. A sidecar shares its pod with the server it governs,
//! so the thread counts can be set (`--worker-threads`, `--max-blocking-threads`) rather than
//! following the node's size.

use std::io;

/// Most threads for blocking work by default: file audit sinks, spool reads, configuration
/// reloads and DNS lookups use a handful; tokio's own default (512) bounds nothing here.
pub const DEFAULT_MAX_BLOCKING_THREADS: usize = 32;

/// Thread counts of the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Worker threads; `None`: one per CPU the process may use (cgroup CPU limit and affinity
    /// respected), or `TOKIO_WORKER_THREADS` when set.
    pub worker_threads: Option<usize>,
    /// Most threads of the blocking pool (at least 1).
    pub max_blocking_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            worker_threads: None,
            max_blocking_threads: DEFAULT_MAX_BLOCKING_THREADS,
        }
    }
}

/// Builds the multi-threaded runtime.
pub fn build(config: RuntimeConfig) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .max_blocking_threads(config.max_blocking_threads.max(1));
    if let Some(workers) = config.worker_threads {
        builder.worker_threads(workers.max(1));
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_count_is_applied() {
        let rt = build(RuntimeConfig {
            worker_threads: Some(3),
            max_blocking_threads: 2,
        })
        .expect("runtime");
        assert_eq!(rt.metrics().num_workers(), 3);
        // Blocking work still runs with a small pool.
        let sum = rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|i| tokio::task::spawn_blocking(move || i * 2))
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.expect("blocking task");
            }
            sum
        });
        assert_eq!(sum, 56);
    }

    #[test]
    fn zero_means_one() {
        let rt = build(RuntimeConfig {
            worker_threads: Some(0),
            max_blocking_threads: 0,
        })
        .expect("runtime");
        assert_eq!(rt.metrics().num_workers(), 1);
        let five = rt.block_on(async { tokio::task::spawn_blocking(|| 5).await });
        assert_eq!(five.ok(), Some(5));
    }
}
