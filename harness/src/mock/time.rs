//! Deterministic RFC 3339 timestamps for Vault's `created_time` metadata.
//!
//! Job: turn a Unix time in whole seconds into the `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
//! form Vault prints, without a date crate.
//!
//! Invariants: pure and total (no panics for any `u64` below year 9999; larger
//! inputs still format, with more year digits).

/// 2025-01-01T00:00:00Z: the mock's clock starts here and ticks one second
/// per state change, so timestamps are reproducible across runs.
pub(crate) const MOCK_EPOCH_UNIX_S: u64 = 1_735_689_600;

/// Formats `unix_s` as RFC 3339 in UTC with nanosecond precision (always zero).
pub(crate) fn rfc3339(unix_s: u64) -> String {
    let days = unix_s / 86_400;
    let rem = unix_s % 86_400;
    // Howard Hinnant's civil_from_days, on non-negative day counts.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000000Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(MOCK_EPOCH_UNIX_S), "2025-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(951_782_400 + 3_661),
            "2000-02-29T01:01:01.000000000Z"
        );
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59.000000000Z");
    }
}
