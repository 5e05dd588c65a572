//! Durations as operators write them: `"250ms"`, `"2s"`, `"5m"`, `"1h"`.
//!
//! Invariant: the result is whole milliseconds and fits a `u32` timeout
//! (about 49 days), so it can be handed to `dispatch_http_call` unchanged.

/// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "expected a duration such as \"2s\" or \"500ms\", got {s:?}"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("duration {s:?} is too large"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "duration {s:?} needs a unit: ms, s, m or h (for example \"2s\")"
            ))
        }
    };
    let ms = n
        .checked_mul(factor)
        .ok_or_else(|| format!("duration {s:?} is too large"))?;
    if ms > u64::from(u32::MAX) {
        return Err(format!("duration {s:?} is too large"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2s"), Ok(2_000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
    }

    #[test]
    fn rejects_missing_unit_sign_and_overflow() {
        for bad in [
            "",
            "2",
            "s",
            "-1s",
            "1.5s",
            "2 s",
            "99999999999999999999s",
            "2d",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
    }
}
