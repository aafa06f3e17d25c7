//! Time as the actors read it. Part of the vocabulary: imports nothing of the crate.
//!
//! Every actor reads "now" and waits for its own periodic work (GC runs, expiry of running
//! pieces, collection of old preheats) through one [`Clock`]. The server runs on
//! [`SystemClock`]; tests run on [`ManualClock`] and move time forward themselves, so that
//! "idle for 10 minutes" or "least recently used" is tested without waiting and without
//! racing a timer.
//!
//! Deadlines of network I/O (connect, response head, a stalled body) are not bookkeeping
//! and stay on tokio's timer: they bound how long a socket may keep us waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::{Actor, AsyncContext, Context};
use tokio::sync::oneshot;

/// A future that completes once the clock has advanced by the asked duration.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for durations and idle times.
    fn now(&self) -> Instant;
    /// Wall-clock time, for what is shown or stored (record times, a file's last use).
    fn wall(&self) -> SystemTime;
    /// Completes after `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> Sleep;
}

/// The clock every actor holds.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clocks and tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    wall_start: SystemTime,
    state: Mutex<ManualState>,
}

#[derive(Debug, Default)]
struct ManualState {
    elapsed: Duration,
    sleepers: Vec<(Duration, oneshot::Sender<()>)>,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock { start: Instant::now(), wall_start: SystemTime::now(), state: Mutex::default() })
    }

    /// Moves time forward by `d` and wakes every sleep that is then due.
    pub fn advance(&self, d: Duration) {
        let due = {
            let mut s = self.lock();
            s.elapsed += d;
            let now = s.elapsed;
            let (due, waiting): (Vec<_>, Vec<_>) = s.sleepers.drain(..).partition(|(at, _)| *at <= now);
            s.sleepers = waiting;
            due
        };
        for (_, wake) in due {
            let _ = wake.send(());
        }
    }

    /// Time advanced since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.lock().elapsed
    }

    /// Sleeps not yet due: what a test can wait for before it advances the clock.
    pub fn pending_sleeps(&self) -> usize {
        let mut s = self.lock();
        s.sleepers.retain(|(_, wake)| !wake.is_closed());
        s.sleepers.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        // A panic while holding this lock cannot leave the state half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.lock().elapsed
    }

    fn wall(&self) -> SystemTime {
        self.wall_start + self.lock().elapsed
    }

    fn sleep(&self, d: Duration) -> Sleep {
        if d.is_zero() {
            return Box::pin(std::future::ready(()));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.lock();
            let at = s.elapsed + d;
            s.sleepers.push((at, tx));
        }
        Box::pin(async move {
            // A clock dropped with the sleep pending never wakes it: time stopped for good.
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Runs `f` on the actor every `period` of `clock`, the first time after `first`.
pub fn run_every<A, F>(ctx: &mut Context<A>, clock: &SharedClock, first: Duration, period: Duration, f: F)
where
    A: Actor<Context = Context<A>>,
    F: Fn(&mut A, &mut Context<A>) + Clone + 'static,
{
    let again = clock.clone();
    let wait = actix::fut::wrap_future::<_, A>(clock.sleep(first));
    ctx.spawn(actix::fut::ActorFutureExt::map(wait, move |(), act, ctx| {
        f(act, ctx);
        run_every(ctx, &again, period, period, f);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleeps_wake_only_when_due() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        let mut short = clock.sleep(Duration::from_secs(1));
        let mut long = clock.sleep(Duration::from_secs(10));
        let poll = |f: &mut Sleep| {
            let waker = futures_util::task::noop_waker();
            f.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_ready()
        };
        assert!(!poll(&mut short) && !poll(&mut long));
        clock.advance(Duration::from_millis(999));
        assert!(!poll(&mut short));
        clock.advance(Duration::from_millis(1));
        assert!(poll(&mut short) && !poll(&mut long));
        assert_eq!(clock.pending_sleeps(), 1);
        clock.advance(Duration::from_secs(9));
        assert!(poll(&mut long));
        assert_eq!(clock.now() - t0, Duration::from_secs(10));
        assert_eq!(clock.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn zero_sleep_is_ready() {
        ManualClock::new().sleep(Duration::ZERO).await;
    }
}
