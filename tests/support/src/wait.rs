//! Waiting for a condition instead of sleeping: poll it until it holds or a deadline passes.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `condition` every 20 ms until it holds; panics naming `what` if it does not hold
/// within `within`.
pub async fn eventually<F>(within: Duration, what: &str, mut condition: impl FnMut() -> F)
where
    F: Future<Output = bool>,
{
    poll_until(within, what, || {
        let check = condition();
        async move {
            if check.await {
                Ok(())
            } else {
                Err(String::new())
            }
        }
    })
    .await
}

/// Polls `check` every 20 ms until it gives a value (`Ok`), for waits that return what they
/// waited for; panics naming `what` and the last `Err` (what was seen instead) if none comes
/// within `within`.
pub async fn poll_until<T, F>(within: Duration, what: &str, mut check: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                let seen = if seen.is_empty() { seen } else { format!(" (last seen: {seen})") };
                panic!("not within {within:?}: {what}{seen}")
            }
            Err(_) => actix_web::rt::time::sleep(POLL).await,
        }
    }
}
