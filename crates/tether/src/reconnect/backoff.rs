//! Backoff delays: websockets' curve, with jitter on every delay.
//!
//! Pure: no tokio, no clock. The random source is passed in, so schedules
//! can be simulated exactly (see the 1,000-client spread test below).

use rand::Rng;
use std::time::Duration;

/// An exponential backoff with jitter.
///
/// The first delay after a connection is lost (or after the first failed
/// attempt) is uniform in `[0, initial_max)`, as RFC 6455 §7.2.3 asks. Then
/// the base delay starts at `min` and grows by `factor` up to `max`, and each
/// delay is drawn uniformly from `[base × (1 − jitter), base]`. The cap is
/// applied last, so no delay exceeds `max`.
///
/// The default is websockets' curve (first delay in [0, 5 s), then 3.1 s
/// growing by 1.618 up to 90 s) with `jitter` 0.5. websockets draws only the
/// first delay at random: a thousand clients cut off together then retry in
/// the same 5-second window forever. With jitter on every delay the window
/// widens at each attempt.
///
/// ```
/// use std::time::Duration;
/// use tether::reconnect::Backoff;
/// let b = Backoff { min: Duration::from_millis(100), max: Duration::from_secs(2), ..Backoff::default() };
/// let mut rng = rand::rngs::mock::StepRng::new(0, 0); // always 0: the top of each range
/// assert_eq!(b.delay(1, &mut rng), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay is uniform in `[0, initial_max)` (default 5 s).
    pub initial_max: Duration,
    /// The base of the second delay (default 3.1 s).
    pub min: Duration,
    /// The growth factor of the base (default 1.618).
    pub factor: f64,
    /// The largest delay (default 90 s).
    pub max: Duration,
    /// How far below the base a delay may fall, from 0 (no jitter) to 1
    /// (full jitter). Default 0.5.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_max: Duration::from_secs(5),
            min: Duration::from_millis(3100),
            factor: 1.618,
            max: Duration::from_secs(90),
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// websockets' exact schedule: random first delay, then no jitter.
    pub fn websockets() -> Self {
        Backoff {
            jitter: 0.0,
            ..Backoff::default()
        }
    }

    /// The base (un-jittered) delay before retry number `n` (0-based).
    pub fn base(&self, n: u32) -> Duration {
        if n == 0 {
            return self.initial_max;
        }
        let secs = self.min.as_secs_f64() * self.factor.max(1.0).powi((n - 1).min(1000) as i32);
        Duration::from_secs_f64(secs.min(self.max.as_secs_f64()))
    }

    /// The delay before retry number `n` (0 for the first), drawn with `rng`.
    pub fn delay<R: Rng + ?Sized>(&self, n: u32, rng: &mut R) -> Duration {
        let u: f64 = rng.gen();
        let d = if n == 0 {
            self.initial_max.as_secs_f64() * u
        } else {
            let base = self.base(n).as_secs_f64();
            base * (1.0 - self.jitter.clamp(0.0, 1.0) * u)
        };
        Duration::from_secs_f64(d.max(0.0)).min(self.max.max(self.initial_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn websockets_curve_without_jitter() {
        // websockets 17: BACKOFF_INITIAL_DELAY 5, MIN 3.1, FACTOR 1.618, MAX 90.
        let b = Backoff::websockets();
        let secs: Vec<f64> = (1..10)
            .map(|n| (b.base(n).as_secs_f64() * 100.0).round() / 100.0)
            .collect();
        // Checked against websockets 17.4 `client.py` `backoff()`: 3.1 × 1.618ⁿ while
        // below 90, then 90.
        assert_eq!(
            secs,
            vec![3.1, 5.02, 8.12, 13.13, 21.25, 34.38, 55.62, 89.99, 90.0]
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            assert!(b.delay(0, &mut rng) < Duration::from_secs(5));
            assert_eq!(b.delay(3, &mut rng), b.base(3));
        }
    }

    #[test]
    fn every_delay_is_jittered_and_capped() {
        let b = Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 1..30 {
            let base = b.base(n);
            let ds: Vec<Duration> = (0..200).map(|_| b.delay(n, &mut rng)).collect();
            assert!(ds
                .iter()
                .all(|d| *d <= base && *d >= base.mul_f64(0.5) && *d <= b.max));
            let distinct = ds.iter().collect::<std::collections::HashSet<_>>().len();
            assert!(distinct > 150, "retry {n} is jittered");
        }
    }

    /// 1,000 clients lose their server at the same instant and every attempt
    /// fails at once. With websockets' schedule each wave of retries stays
    /// inside the first 5-second window; with jitter on every delay the waves
    /// spread out, so the server is never hit by all of them together.
    #[test]
    fn thousand_clients_spread_out() {
        fn schedules(b: &Backoff, seed: u64) -> Vec<Vec<f64>> {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..1000)
                .map(|_| {
                    let mut t = 0.0;
                    (0..10)
                        .map(|n| {
                            t += b.delay(n, &mut rng).as_secs_f64();
                            t
                        })
                        .collect()
                })
                .collect()
        }
        // The width of the time window holding the middle 90% of wave `k`,
        // and the most clients retrying within any one second of it.
        fn wave(s: &[Vec<f64>], k: usize) -> (f64, usize) {
            let mut t: Vec<f64> = s.iter().map(|c| c[k]).collect();
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let width = t[949] - t[49];
            let mut peak = 0;
            let mut j = 0;
            for i in 0..t.len() {
                while t[i] - t[j] > 1.0 {
                    j += 1;
                }
                peak = peak.max(i - j + 1);
            }
            (width, peak)
        }
        let ours = schedules(&Backoff::default(), 42);
        let theirs = schedules(&Backoff::websockets(), 42);
        for k in 1..10 {
            let (w_theirs, _) = wave(&theirs, k);
            assert!(
                w_theirs < 5.0,
                "websockets' wave {k} stays within 5 s: {w_theirs}"
            );
        }
        let (w, peak) = wave(&ours, 9);
        assert!(
            w > 60.0,
            "the 10th wave spreads over more than a minute: {w:.1} s"
        );
        assert!(
            peak < 60,
            "at most 6% of clients in any second of the 10th wave: {peak}"
        );
        let (_, peak_theirs) = wave(&theirs, 9);
        assert!(
            peak_theirs > 150,
            "websockets keeps them together: {peak_theirs}"
        );
        // The spread only grows.
        let widths: Vec<f64> = (1..10).map(|k| wave(&ours, k).0).collect();
        assert!(widths.windows(2).all(|w| w[1] >= w[0] * 0.95), "{widths:?}");
    }
}
