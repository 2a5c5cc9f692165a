//! Bounded, jittered retries of DDL that gave up waiting for a table lock (SQLSTATE 55P03).
//!
//! Every DDL transaction runs under `lock_timeout`, so it never queues in front of the gateway's
//! traffic for longer than that; when it times out it is rolled back and tried again after a
//! random pause, a bounded number of times, then dhctl gives up with exit 2.

use std::time::Duration;

use tokio_postgres::error::SqlState;

/// The first pause; it doubles per attempt up to [`MAX_PAUSE`].
const BASE_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The retry budget for one transaction.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    retries: u32,
}

impl Backoff {
    pub fn new(retries: u32) -> Backoff {
        Backoff {
            attempt: 0,
            retries,
        }
    }

    /// How many attempts have been made so far (1 after the first failure).
    pub fn attempts(&self) -> u32 {
        self.attempt + 1
    }

    /// Sleeps before the next attempt and returns true, or returns false when the budget is spent.
    pub async fn pause(&mut self) -> bool {
        if self.attempt >= self.retries {
            return false;
        }
        // rand's f64 is uniform in [0, 1).
        let pause = pause_for(self.attempt, rand::random());
        self.attempt += 1;
        tracing::info!(
            attempt = self.attempt,
            pause_ms = pause.as_millis() as u64,
            "lock_timeout hit; retrying"
        );
        tokio::time::sleep(pause).await;
        true
    }
}

/// "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): a uniform pause in
/// [ceiling/2, ceiling], so racing runners spread out but never retry instantly.
pub fn pause_for(attempt: u32, unit: f64) -> Duration {
    let ceiling = BASE_PAUSE
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_PAUSE);
    ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// Runs `attempt` until it succeeds, fails with anything but a lock timeout, or the budget of
/// `retries` is spent, pausing with [`Backoff`] in between. `on_retry` hears of each retry that
/// will happen, with the number of the attempt that failed. Returns the value and the attempts
/// made, or the last error and the attempts made.
pub async fn retrying<T, E>(
    retries: u32,
    is_lock_timeout: impl Fn(&E) -> bool,
    on_retry: &dyn Fn(u32),
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
) -> Result<(T, u32), (E, u32)> {
    let mut backoff = Backoff::new(retries);
    loop {
        match attempt().await {
            Ok(value) => return Ok((value, backoff.attempts())),
            Err(e) if is_lock_timeout(&e) && backoff.attempts() <= retries => {
                on_retry(backoff.attempts());
                backoff.pause().await;
            }
            Err(e) => return Err((e, backoff.attempts())),
        }
    }
}

/// [`retrying`] one simple-query string.
pub async fn batch_execute(
    client: &tokio_postgres::Client,
    sql: &str,
    retries: u32,
    on_retry: &dyn Fn(u32),
) -> Result<u32, (tokio_postgres::Error, u32)> {
    retrying(retries, is_lock_timeout, on_retry, async || {
        client.batch_execute(sql).await
    })
    .await
    .map(|((), attempts)| attempts)
}

/// True for a statement that gave up waiting for a lock (lock_timeout).
pub fn is_lock_timeout(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_are_capped() {
        assert_eq!(pause_for(0, 1.0), Duration::from_millis(200));
        assert_eq!(pause_for(0, 0.0), Duration::from_millis(100));
        assert_eq!(pause_for(2, 1.0), Duration::from_millis(800));
        assert_eq!(pause_for(30, 1.0), MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_stops_at_the_budget_and_announces_only_retries_that_happen() {
        let announced = std::cell::RefCell::new(Vec::new());
        let on_retry = |attempt| announced.borrow_mut().push(attempt);
        let mut calls = 0;
        let outcome: Result<((), u32), (&str, u32)> = retrying(
            2,
            |e: &&str| *e == "timeout",
            &on_retry,
            async || {
                calls += 1;
                Err("timeout")
            },
        )
        .await;
        assert_eq!(outcome, Err(("timeout", 3)));
        assert_eq!(calls, 3);
        assert_eq!(*announced.borrow(), vec![1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_gives_up_at_once_on_other_errors_and_counts_successes() {
        let never = |_: u32| panic!("no retry expected");
        let failed: Result<((), u32), (&str, u32)> = retrying(
            5,
            |e: &&str| *e == "timeout",
            &never,
            async || Err("syntax"),
        )
        .await;
        assert_eq!(failed, Err(("syntax", 1)));
        let mut calls = 0;
        let ok = retrying(
            5,
            |e: &&str| *e == "timeout",
            &|_| {},
            async || {
                calls += 1;
                if calls < 3 {
                    Err("timeout")
                } else {
                    Ok(calls)
                }
            },
        )
        .await;
        assert_eq!(ok, Ok((3, 3)));
    }
}
