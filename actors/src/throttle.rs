//! A byte-rate cap shared by everything that passes through it: all CDN runs together, or
//! every connection of the download port. `governor`'s token bucket does the accounting.
//!
//! Cells are KiB: governor keeps the time per cell in whole nanoseconds, which would round a
//! 200 MiB/s rate counted in bytes (4.77 ns each) by a fifth. The bucket holds 50 ms of the
//! rate, so a run cannot start with a burst of a whole second.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::rate::{ByteRate, KIB};

#[derive(Clone)]
pub struct Throttle {
    limiter: Arc<DefaultDirectRateLimiter>,
    /// Bytes that passed so far: whole KiB of it are cells spent.
    passed: Arc<AtomicU64>,
    burst: NonZeroU32,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").field("burst_kib", &self.burst).finish()
    }
}

impl Throttle {
    /// A cap of `rate`; `None` for none.
    pub fn new(rate: Option<ByteRate>) -> Option<Throttle> {
        let kib_per_sec = rate?.bytes_per_sec().div_ceil(KIB).clamp(1, u32::MAX as u64) as u32;
        let per_second = NonZeroU32::new(kib_per_sec)?;
        let burst = NonZeroU32::new((kib_per_sec / 20).max(1))?;
        let limiter = RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst));
        // The bucket starts full; emptied, the first transfer cannot beat the rate either.
        let _ = limiter.check_n(burst);
        Some(Throttle { limiter: Arc::new(limiter), passed: Arc::new(AtomicU64::new(0)), burst })
    }

    /// Waits until `bytes` more may pass.
    pub async fn pass(&self, bytes: usize) {
        let before = self.passed.fetch_add(bytes as u64, Ordering::Relaxed);
        let mut cells = (before + bytes as u64) / KIB - before / KIB;
        while cells > 0 {
            let n = cells.min(self.burst.get() as u64) as u32;
            cells -= n as u64;
            let Some(n) = NonZeroU32::new(n) else { break };
            // Never more than the burst at once, so the bucket can always hold it.
            if self.limiter.until_n_ready(n).await.is_err() {
                break;
            }
        }
    }
}
