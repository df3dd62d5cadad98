//! Background threads yield to the request path.
//!
//! The audit spool's writer (`audit-spool`) runs as `SCHED_BATCH`. A normal thread woken on a
//! busy CPU preempts the running one at once; a batch thread waits until the CPU is free or the
//! running thread's slice ends. Without it, every record handed to the writer interrupted the
//! tokio worker that sent it (both often share one CPU): two context switches per record, with
//! batches of one or two records under load. As a batch thread the writer runs when the worker
//! has nothing left to do (typically because the calls it serves await their records), takes
//! every record queued by then in one write, and the worker is not interrupted. Under
//! saturation, records per write went from 2 to 4–9 with `ack: written` and from 26 to 35 with
//! `ack: durable`; sidecar CPU per call fell by about 15 µs and 5 µs (bench/analysis.md). At low
//! rates nothing changes: the CPU is idle, so the writer runs as soon as it is woken.
//!
//! The other side of batch: a woken worker does not preempt it either. That is right for the
//! writer (the worker's calls wait for its records anyway), wrong for chores nobody waits for.
//! The spool's janitor (`audit-chores`: syncing a closed segment, deleting a shipped one,
//! each a few milliseconds of kernel time per 16 MiB) runs as `SCHED_IDLE`, which a woken normal
//! thread preempts; that alone was not enough, so it also works in short steps with a sleep
//! between them (`audit/janitor.rs` says why).
//!
//! Any thread may switch itself to either policy without privileges (and cannot switch back from
//! `SCHED_IDLE`, hence dedicated threads). Linux only; elsewhere [`batch`] and [`idle`] do
//! nothing.
#![allow(unsafe_code)]

/// Makes the calling thread a batch thread (see the module docs). `true` when it took effect.
pub fn batch() -> bool {
    #[cfg(target_os = "linux")]
    return set_policy(libc::SCHED_BATCH);
    #[cfg(not(target_os = "linux"))]
    false
}

/// Makes the calling thread an idle-priority thread, for good (see the module docs). `true` when
/// it took effect.
pub fn idle() -> bool {
    #[cfg(target_os = "linux")]
    return set_policy(libc::SCHED_IDLE);
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(target_os = "linux")]
fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call; pid 0 is the calling
    // thread. The call changes only this thread's scheduling policy.
    unsafe { libc::sched_setscheduler(0, policy, &raw const param) == 0 }
}

/// The scheduling policy of thread `tid` of this process (0 normal, 3 batch, 5 idle), for tests and
/// diagnostics.
pub fn policy_of(tid: &str) -> Option<u32> {
    policy(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
}

/// Field 41 (`policy`) of a `/proc/…/stat` line.
fn policy(stat: &str) -> Option<u32> {
    // The command name (field 2) may contain spaces and parentheses; the fields after it never do.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(41 - 3)?.parse().ok()
}

/// The thread ids of this process's threads named `name`.
pub fn threads_named(name: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Runs `set` on a new thread; its policy before and after.
    fn switch(set: fn() -> bool) -> (Option<u32>, Option<u32>) {
        std::thread::Builder::new()
            .name("sched-test".into())
            .spawn(move || {
                let tid = threads_named("sched-test").pop().expect("this thread");
                let before = policy_of(&tid);
                assert!(set(), "sched_setscheduler refused");
                (before, policy_of(&tid))
            })
            .expect("spawn")
            .join()
            .expect("join")
    }

    #[test]
    fn a_thread_switches_itself_to_batch_or_idle() {
        assert_eq!(
            switch(batch),
            (Some(0), Some(3)),
            "SCHED_OTHER → SCHED_BATCH"
        );
        assert_eq!(switch(idle), (Some(0), Some(5)), "SCHED_OTHER → SCHED_IDLE");
        // The thread that spawned them keeps its policy.
        let me = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        assert_eq!(policy(&me), Some(0));
    }
}
