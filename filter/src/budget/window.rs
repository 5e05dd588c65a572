//! Budget windows, aligned to UTC: a minute, an hour, a day (from 00:00
//! UTC) or a calendar month (from the 1st, 00:00 UTC).
//!
//! Invariants:
//! - A window is named by its start, in seconds since the Unix epoch: two
//!   instants are in the same window exactly when their [`Window::start`]s
//!   are equal, and the next window starts at [`Window::next_start`].
//! - Month arithmetic uses the proleptic Gregorian calendar (leap years
//!   included), with no table and no clock other than the one given.

/// The length of a budget's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
}

impl Window {
    pub fn parse(s: &str) -> Option<Window> {
        Some(match s {
            "minute" => Window::Minute,
            "hour" => Window::Hour,
            "day" => Window::Day,
            "month" => Window::Month,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// The start (epoch seconds) of the window holding `now_s`.
    pub fn start(self, now_s: u64) -> u64 {
        match self {
            Window::Minute => now_s - now_s % 60,
            Window::Hour => now_s - now_s % 3_600,
            Window::Day => now_s - now_s % 86_400,
            Window::Month => {
                let (y, m, _) = civil_from_days(now_s / 86_400);
                days_from_civil(y, m, 1) * 86_400
            }
        }
    }

    /// The start of the window after the one holding `now_s`.
    pub fn next_start(self, now_s: u64) -> u64 {
        match self {
            Window::Minute => self.start(now_s) + 60,
            Window::Hour => self.start(now_s) + 3_600,
            Window::Day => self.start(now_s) + 86_400,
            Window::Month => {
                let (y, m, _) = civil_from_days(now_s / 86_400);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * 86_400
            }
        }
    }

    /// Whole seconds until the next window starts (at least 1): a refused
    /// request's `retry-after`.
    pub fn retry_after_s(self, now_s: u64) -> u64 {
        self.next_start(now_s).saturating_sub(now_s).max(1)
    }
}

/// (year, month 1..=12, day 1..=31) of day `days` since 1970-01-01
/// (Howard Hinnant's algorithm, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of (year ≥ 1970, month, day).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // 2026-11-30T06:01:02Z
    const NOW: u64 = 1_796_018_462;

    #[test]
    fn fixed_windows_align_to_utc() {
        assert_eq!(Window::Minute.start(NOW), 1_796_018_460);
        assert_eq!(Window::Hour.start(NOW), 1_796_018_400);
        assert_eq!(Window::Day.start(NOW), 1_795_996_800);
        assert_eq!(Window::Minute.retry_after_s(NOW), 58);
        assert_eq!(Window::Minute.retry_after_s(1_796_018_460), 60);
    }

    #[test]
    fn months_follow_the_calendar() {
        // 2026-11-01T00:00:00Z and 2026-12-01T00:00:00Z.
        assert_eq!(Window::Month.start(NOW), 1_793_491_200);
        assert_eq!(Window::Month.next_start(NOW), 1_796_083_200);
        // December rolls into January; February 2028 has 29 days.
        assert_eq!(Window::Month.next_start(1_796_083_200), 1_798_761_600);
        let feb_2028 = 1_832_976_000; // 2028-02-01
        assert_eq!(Window::Month.start(feb_2028 + 28 * 86_400), feb_2028);
        assert_eq!(Window::Month.next_start(feb_2028), feb_2028 + 29 * 86_400);
    }

    #[test]
    fn days_round_trip_over_four_centuries() {
        for days in (0..146_097 * 2).step_by(17) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn every_instant_lies_in_its_window() {
        for w in [Window::Minute, Window::Hour, Window::Day, Window::Month] {
            for t in (NOW..NOW + 90 * 86_400).step_by(7_919) {
                assert!(w.start(t) <= t && t < w.next_start(t), "{w:?} {t}");
                assert_eq!(w.start(w.next_start(t)), w.next_start(t));
            }
        }
    }
}
