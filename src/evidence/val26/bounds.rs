//! The bounds the seed sets on measured times: the one place the checks, the text report and
//! the HTML charts read them from.

/// A metric of a slice report and the most it may measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The metric's name in the slice report (`<name>_ms`).
    pub metric: &'static str,
    pub ms: u64,
}

/// VAL13: a SIGTERM'd leader replaced (also judged by VAL26-06).
pub const SIGTERM_FAILOVER: Bound = Bound::new("sigterm_failover_ms", 5_000);
/// VAL13: a SIGKILL'd leader replaced.
pub const SIGKILL_FAILOVER: Bound = Bound::new("sigkill_failover_ms", 5_000);
/// VAL13: each of the rapid failover cycles.
pub const RAPID_CYCLE: Bound = Bound::new("rapid_cycle_ms", 5_000);
/// VAL14: the standby caught up after the light workload.
pub const LIGHT_DRAIN: Bound = Bound::new("light_drain_ms", 2_000);
/// VAL14: the standby caught up after the heavy workload.
pub const HEAVY_DRAIN: Bound = Bound::new("heavy_drain_ms", 5_000);
/// VAL15: one backup.
pub const BACKUP: Bound = Bound::new("backup_ms", 30_000);
/// VAL15: one restore.
pub const RESTORE: Bound = Bound::new("restore_ms", 60_000);
/// VAL17: quorum loss detected (also judged by VAL26-09).
pub const LOSS_DETECTION: Bound = Bound::new("loss_detection_ms", 30_000);
/// VAL17: back to one leader once quorum returned.
pub const QUORUM_RECOVERY: Bound = Bound::new("recovery_ms", 30_000);

impl Bound {
    const fn new(metric: &'static str, ms: u64) -> Self {
        Self { metric, ms }
    }

    /// The bound as the thresholds print it: `5,000 ms`.
    pub fn described(self) -> String {
        let digits = self.ms.to_string();
        let mut grouped = String::new();
        for (n, digit) in digits.chars().enumerate() {
            if n > 0 && (digits.len() - n) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        format!("{grouped} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_print_with_thousands_grouped() {
        assert_eq!(SIGTERM_FAILOVER.described(), "5,000 ms");
        assert_eq!(RESTORE.described(), "60,000 ms");
        assert_eq!(Bound::new("m", 950).described(), "950 ms");
        assert_eq!(
            Bound {
                metric: "m",
                ms: 1_234_567
            }
            .described(),
            "1,234,567 ms"
        );
    }
}
