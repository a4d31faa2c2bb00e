//! A latency histogram with about 1.5 % resolution at every scale, cheap to record into and
//! to merge across shards (a run split over several processes adds their buckets).
//!
//! Values are microseconds. Below 128 µs every value has its own bucket; above, each power of
//! two is cut into 64 buckets, so a bucket is never wider than 1/64 of its lower bound.

use serde::{Deserialize, Serialize};

/// Buckets below this value hold one microsecond each.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const PER_OCTAVE: u64 = 64;
/// Enough buckets for 2^40 µs (12 days): no latency of a bounded run comes near.
const BUCKETS: usize = 40 * PER_OCTAVE as usize + LINEAR as usize;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

fn index(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    // For us >= 128 the top bit is at 7 or above: shift it down so 7 bits remain (64..128).
    let shift = 63 - us.leading_zeros() as u64 - 6;
    ((shift * PER_OCTAVE + (us >> shift)) as usize).min(BUCKETS - 1)
}

/// The highest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = i / PER_OCTAVE - 1;
    let sub = i % PER_OCTAVE + PER_OCTAVE;
    ((sub + 1) << shift) - 1
}

impl Histogram {
    pub fn record_us(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }

    /// Record a duration in milliseconds (negative values, from clock steps, count as 0).
    pub fn record_ms(&mut self, ms: f64) {
        self.record_us((ms.max(0.0) * 1000.0).round() as u64);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The value at quantile `q` (0..=1), in microseconds: the upper edge of its bucket, so a
    /// percentile is never reported lower than it was.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max_us);
            }
        }
        self.max_us
    }

    pub fn mean_us(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.total as f64
        }
    }

    pub fn summary(&self) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: self.total,
            mean_ms: self.mean_us() / 1000.0,
            p50_ms: ms(self.quantile_us(0.50)),
            p90_ms: ms(self.quantile_us(0.90)),
            p95_ms: ms(self.quantile_us(0.95)),
            p99_ms: ms(self.quantile_us(0.99)),
            max_ms: ms(self.max_us),
        }
    }
}

/// What a report shows of a histogram.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The JSON form: the summary for people, the sparse buckets for merging.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    summary: Summary,
    sum_us: u64,
    max_us: u64,
    /// `[bucket index, count]` for every bucket that is not empty.
    buckets: Vec<(usize, u64)>,
}

impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            summary: self.summary(),
            sum_us: self.sum_us,
            max_us: self.max_us,
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| (i, c))
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Stored::deserialize(d)?;
        let mut h = Histogram {
            sum_us: stored.sum_us,
            max_us: stored.max_us,
            ..Histogram::default()
        };
        for (i, c) in stored.buckets {
            let slot = h
                .counts
                .get_mut(i)
                .ok_or_else(|| serde::de::Error::custom(format!("bucket {i} out of range")))?;
            *slot += c;
            h.total += c;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut last = None;
        for us in 0..1_000_000u64 {
            let i = index(us);
            assert!(upper(i) >= us, "{us} above its bucket {i}");
            if let Some(prev) = last {
                assert!(i == prev || i == prev + 1, "gap at {us}");
            }
            last = Some(i);
            if us >= LINEAR {
                assert!((upper(i) - us) * 64 <= us, "bucket of {us} too wide");
            }
        }
    }

    #[test]
    fn quantiles_and_merge() {
        let mut a = Histogram::default();
        for us in 1..=1000 {
            a.record_us(us);
        }
        let p99 = a.quantile_us(0.99);
        assert!((990..=1005).contains(&p99), "{p99}");
        assert_eq!(a.quantile_us(1.0), 1000);
        let json = serde_json::to_string(&a).unwrap();
        let mut b: Histogram = serde_json::from_str(&json).unwrap();
        b.merge(&a);
        assert_eq!(b.summary().count, 2000);
        assert_eq!(b.quantile_us(0.99), p99);
    }
}
