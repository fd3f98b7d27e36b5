//! Telling a slow transfer from a stalled one, and giving up on a stalled one in time.
//!
//! A registry can accept a connection and never answer, stop in the middle of a body, or
//! trickle a byte now and then for as long as it likes. Three limits bound that:
//!
//! - **low-speed floor** (`low_speed_limit` bytes a second, `low_speed_time`): a transfer that
//!   falls `low_speed_time` behind a pace of `low_speed_limit` bytes a second is stalled. It
//!   starts with `low_speed_time` of credit; waiting spends it, and every `low_speed_limit`
//!   bytes received earn one second back (never more than `low_speed_time` in hand). A silent
//!   server is stalled after `low_speed_time`, one sending at half the floor after twice
//!   that, and a slow download at or above the floor never is. Waiting for response headers
//!   counts the same way: no byte at all. Only time spent waiting on the network counts, not
//!   time the reader of the bytes takes (a slow decompressor does not stall a download).
//! - **timeout** (the patience of one request, its retries included): a request that gets no
//!   usable answer within it gives up, with one line naming the host.
//!
//! A `--low-speed-limit` of 0 leaves only silence: a transfer is stalled when no byte arrives
//! for `low_speed_time`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The limits, as the command line sets them (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallLimits {
    /// The longest one request (its retries and resumes included) goes on without progress.
    pub timeout: Duration,
    /// The low-speed floor in bytes a second (0: only silence counts).
    pub low_speed_limit: u64,
    /// How far behind the floor's pace a transfer may fall.
    pub low_speed_time: Duration,
}

impl Default for StallLimits {
    fn default() -> Self {
        StallLimits {
            timeout: Duration::from_secs(60),
            low_speed_limit: 1024,
            low_speed_time: Duration::from_secs(20),
        }
    }
}

impl StallLimits {
    /// The floor in words: `1 KiB/s for 20s`.
    pub fn describe_floor(&self) -> String {
        let time = humantime::format_duration(self.low_speed_time);
        if self.low_speed_limit == 0 {
            return format!("nothing for {time}");
        }
        let speed = bytesize::ByteSize(self.low_speed_limit).display().iec();
        format!("less than {speed}/s for {time}")
    }
}

/// What a stalled transfer was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The response headers.
    Answer,
    /// More of the body.
    Body,
}

/// A transfer fell below the floor, or waited for an answer longer than it could.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    /// What it was waiting for.
    pub waiting: Waiting,
    /// How long it could wait at most (the low-speed time, or less when the request's
    /// patience was running out).
    pub patience: Duration,
    /// The limits that tripped.
    pub limits: StallLimits,
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.waiting {
            Waiting::Answer => write!(
                f,
                "no answer within {}",
                humantime::format_duration(round_to_millis(self.patience))
            ),
            Waiting::Body => write!(f, "the transfer stalled ({})", self.limits.describe_floor()),
        }
    }
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl std::error::Error for Stalled {}

/// The credit of one transfer against the low-speed floor.
#[derive(Debug, Clone)]
pub struct Pace {
    limits: StallLimits,
    credit: Duration,
    cap: Duration,
}

impl Pace {
    /// A transfer with full credit (`low_speed_time`, or less when `cap` is shorter: the
    /// patience a request has left).
    pub fn new(limits: StallLimits, cap: Option<Duration>) -> Pace {
        let cap = cap.map_or(limits.low_speed_time, |c| c.min(limits.low_speed_time));
        Pace {
            limits,
            credit: cap,
            cap,
        }
    }

    /// Wait for `next` (the next piece of the transfer) with the credit left: `Err` when it
    /// runs out first. The time waited is spent.
    pub async fn wait<F: Future>(
        &mut self,
        next: F,
        waiting: Waiting,
    ) -> Result<F::Output, Stalled> {
        let started = Instant::now();
        match tokio::time::timeout(self.credit, next).await {
            Ok(output) => {
                self.credit = self.credit.saturating_sub(started.elapsed());
                Ok(output)
            }
            Err(_) => {
                self.credit = Duration::ZERO;
                Err(Stalled {
                    waiting,
                    patience: self.cap,
                    limits: self.limits,
                })
            }
        }
    }

    /// Whether the credit is whole: the transfer keeps up with the floor.
    pub fn is_full(&self) -> bool {
        self.credit >= self.cap
    }

    /// Count `bytes` that arrived: one second of credit back per `low_speed_limit` bytes, up
    /// to the cap (all of it at once when the floor is 0).
    pub fn received(&mut self, bytes: usize) {
        let earned = match self.limits.low_speed_limit {
            0 if bytes > 0 => self.cap,
            0 => Duration::ZERO,
            limit => Duration::from_secs_f64(bytes as f64 / limit as f64),
        };
        self.credit = self.credit.saturating_add(earned).min(self.cap);
    }
}

/// The patience of one request across its attempts: [`StallLimits::timeout`] from its start.
#[derive(Debug, Clone)]
pub struct Budget {
    limits: StallLimits,
    started: Instant,
}

impl Budget {
    /// Start counting now.
    pub fn start(limits: StallLimits) -> Budget {
        Budget {
            limits,
            started: Instant::now(),
        }
    }

    /// The limits it counts against.
    pub fn limits(&self) -> StallLimits {
        self.limits
    }

    /// The patience left.
    pub fn remaining(&self) -> Duration {
        self.limits.timeout.saturating_sub(self.started.elapsed())
    }

    /// Count from now again: the request made progress.
    pub fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// A pace for the next attempt: full credit, or the patience left when that is less.
    pub fn pace(&self) -> Pace {
        Pace::new(self.limits, Some(self.remaining()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StallLimits {
        StallLimits {
            timeout: Duration::from_secs(60),
            low_speed_limit: 1000,
            low_speed_time: Duration::from_secs(20),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silence_stalls_after_the_low_speed_time() {
        let mut pace = Pace::new(limits(), None);
        let started = Instant::now();
        let result = pace
            .wait(std::future::pending::<()>(), Waiting::Answer)
            .await;
        assert!(result.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(message, "no answer within 20s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_floor_stalls_and_one_above_never_does() {
        // 100 bytes every second: a tenth of the floor, stalled after about 22 s.
        let mut pace = Pace::new(limits(), None);
        let started = Instant::now();
        let tick = || tokio::time::sleep(Duration::from_secs(1));
        let stalled = loop {
            match pace.wait(tick(), Waiting::Body).await {
                Ok(()) => pace.received(100),
                Err(e) => break e,
            }
        };
        let elapsed = started.elapsed().as_secs();
        assert!((21..=23).contains(&elapsed), "{elapsed}");
        assert_eq!(
            stalled.to_string(),
            "the transfer stalled (less than 1000 B/s for 20s)"
        );

        // 1100 bytes a second, just above the floor, for ten minutes.
        let mut pace = Pace::new(limits(), None);
        for _ in 0..600 {
            assert!(pace.wait(tick(), Waiting::Body).await.is_ok());
            pace.received(1100);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_floor_counts_only_silence() {
        let mut pace = Pace::new(
            StallLimits {
                low_speed_limit: 0,
                ..limits()
            },
            None,
        );
        let slow = || tokio::time::sleep(Duration::from_secs(19));
        for _ in 0..10 {
            assert!(pace.wait(slow(), Waiting::Body).await.is_ok());
            pace.received(1);
        }
        let silent = tokio::time::sleep(Duration::from_secs(21));
        assert!(pace.wait(silent, Waiting::Body).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_an_attempt_by_the_patience_left() {
        let budget = Budget::start(limits());
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert_eq!(budget.remaining(), Duration::from_secs(10));
        let mut pace = budget.pace();
        let started = Instant::now();
        let result = pace
            .wait(std::future::pending::<()>(), Waiting::Answer)
            .await;
        assert!(result.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
