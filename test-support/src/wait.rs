//! Bounded polling: check a condition until it holds, for at most a given time.
//!
//! | form | the check | waits with |
//! | --- | --- | --- |
//! | [`eventually`] (panics), [`try_eventually`] (`Err`), [`poll`] (`None`) | a closure | `std::thread::sleep` |
//! | [`eventually_async`] (panics) | a closure | `tokio::time::sleep` |
//! | [`eventually_await`] (panics) | a closure returning a future | `tokio::time::sleep` |
//!
//! A check returns `bool` (wait until true) or `Option<T>` (wait for `Some`, return the `T`):
//! see [`Ready`]. It runs at once, then every 20 ms (a fine grain: tests time what they wait
//! for), and a last time when the time is up.

use std::time::Duration;

/// What a check returns: whether the wait is over, and with what value.
pub trait Ready {
    /// What the wait returns.
    type Value;
    /// `Some` when the wait is over.
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

const PAUSE: Duration = Duration::from_millis(20);

/// The pause before the next check, given the time left; `None` when none is left.
fn pause(left: Duration) -> Option<Duration> {
    (!left.is_zero()).then(|| PAUSE.min(left))
}

fn timed_out(what: &str, within: Duration) -> String {
    format!("timed out after {within:?} waiting for {what}")
}

/// Runs `check` until it is [`Ready`], for at most `within`; `None` when the time is up.
pub fn poll<R: Ready>(within: Duration, mut check: impl FnMut() -> R) -> Option<R::Value> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check().ready() {
            return Some(value);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        std::thread::sleep(pause(left)?);
    }
}

/// [`poll`], with an error naming `what` when the time is up.
///
/// # Errors
///
/// `check` was not ready within `within`.
pub fn try_eventually<R: Ready>(
    what: &str,
    within: Duration,
    check: impl FnMut() -> R,
) -> Result<R::Value, String> {
    poll(within, check).ok_or_else(|| timed_out(what, within))
}

/// [`poll`], panicking with `what` when the time is up.
pub fn eventually<R: Ready>(what: &str, within: Duration, check: impl FnMut() -> R) -> R::Value {
    try_eventually(what, within, check).unwrap_or_else(|e| panic!("{e}"))
}

/// [`eventually`] inside a tokio runtime: the pauses let other tasks run.
pub async fn eventually_async<R: Ready>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> R,
) -> R::Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().ready() {
            return value;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(pause) = pause(left) else {
            panic!("{}", timed_out(what, within));
        };
        tokio::time::sleep(pause).await;
    }
}

/// [`eventually_async`] with an async check (one that awaits a request, say).
pub async fn eventually_await<R, F>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) -> R::Value
where
    R: Ready,
    F: Future<Output = R>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await.ready() {
            return value;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(pause) = pause(left) else {
            panic!("{}", timed_out(what, within));
        };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_that_never_holds_gives_up_in_time() {
        let start = std::time::Instant::now();
        let mut calls = 0;
        let got = poll(Duration::from_millis(300), || {
            calls += 1;
            false
        });
        assert_eq!(got, None);
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!((5..=17).contains(&calls), "{calls} checks");
    }

    #[test]
    fn the_value_of_the_first_ready_check_is_returned() {
        let mut n = 0;
        let got = eventually("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(got, 3);
        assert_eq!(
            try_eventually("never", Duration::ZERO, || false),
            Err("timed out after 0ns waiting for never".to_owned())
        );
    }

    #[tokio::test]
    async fn the_async_forms_wait_on_tokio() {
        let mut n = 0;
        eventually_async("n to reach 2", Duration::from_secs(5), || {
            n += 1;
            n >= 2
        })
        .await;
        let got = eventually_await("an answer", Duration::from_secs(5), || async { Some(7) }).await;
        assert_eq!(got, 7);
    }
}
