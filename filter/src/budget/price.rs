//! Money for `cost` budgets: prices per model, in integer micro-dollars.
//!
//! Prices are written in USD per million tokens as decimal strings
//! (`"0.15"`, `"2.50"`) or integers, and a budget's `cost` in USD the same
//! way; both are read exactly into micro-dollars (at most six decimals), so
//! no float ever touches money.
//!
//! Invariants:
//! - A cost is rounded up to the next micro-dollar: a request is never
//!   charged less than its tokens cost, and never reserved less than its
//!   bound costs.
//! - Arithmetic is done in u128 and saturates on the way back to u64.

use crate::policy::model_pattern::ModelPattern;

/// Micro-dollars.
pub type Micros = u64;

/// One model's prices, in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: Micros,
    /// For input tokens read from the provider's prompt cache.
    pub cached_input: Micros,
    pub output: Micros,
}

impl Price {
    /// The cost of `input` tokens (of which `cached` were cache reads) and
    /// `output` tokens, rounded up.
    pub fn cost(&self, input: u64, cached: u64, output: u64) -> Micros {
        let cached = cached.min(input);
        let part = |tokens: u64, price: Micros| u128::from(tokens) * u128::from(price);
        let millionths = part(input - cached, self.input)
            .saturating_add(part(cached, self.cached_input))
            .saturating_add(part(output, self.output));
        u64::try_from(millionths.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// The configuration's `prices`, first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable(pub Vec<(ModelPattern, Price)>);

impl PriceTable {
    pub fn for_model(&self, model: &str) -> Option<Price> {
        self.0
            .iter()
            .find(|(p, _)| p.matches(model))
            .map(|(_, price)| *price)
    }
}

/// Reads a non-negative decimal amount (`"12"`, `"0.075"`, `"2.50"`) into
/// millionths: at most six decimals, at most 18 digits before the point.
pub fn parse_micros(s: &str) -> Option<Micros> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return None,
        None => (s, ""),
    };
    if whole.is_empty()
        || whole.len() > 12
        || frac.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut frac_micros = 0u64;
    for (i, b) in frac.bytes().enumerate() {
        frac_micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    whole.checked_mul(1_000_000)?.checked_add(frac_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn decimal_amounts_read_exactly() {
        assert_eq!(parse_micros("0.15"), Some(150_000));
        assert_eq!(parse_micros("0.075"), Some(75_000));
        assert_eq!(parse_micros("2.50"), Some(2_500_000));
        assert_eq!(parse_micros("12"), Some(12_000_000));
        assert_eq!(parse_micros("0.000001"), Some(1));
        for bad in [
            "",
            ".5",
            "1.",
            "1.0000001",
            "-1",
            "1e3",
            "0x10",
            " 1",
            "1,5",
            "9999999999999",
        ] {
            assert_eq!(parse_micros(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn costs_round_up_and_price_cache_reads_apart() {
        // gpt-4o-mini-like: $0.15 in, $0.075 cached, $0.60 out per Mtok.
        let p = Price {
            input: 150_000,
            cached_input: 75_000,
            output: 600_000,
        };
        // 1,000 in (400 cached) and 500 out: 600×0.15 + 400×0.075 + 500×0.6
        // = 90 + 30 + 300 = 420 micro-dollars.
        assert_eq!(p.cost(1_000, 400, 500), 420);
        // One token costs 0.15 micro-dollars: charged 1.
        assert_eq!(p.cost(1, 0, 0), 1);
        assert_eq!(p.cost(0, 0, 0), 0);
        // More cached than input is capped at the input.
        assert_eq!(p.cost(10, 50, 0), p.cost(10, 10, 0));
        assert_eq!(
            Price {
                input: u64::MAX,
                cached_input: 0,
                output: u64::MAX
            }
            .cost(u64::MAX, 0, u64::MAX),
            u64::MAX
        );
    }

    #[test]
    fn the_first_matching_price_wins() {
        let t = PriceTable(vec![
            (
                ModelPattern::parse("gpt-4o-mini").unwrap(),
                Price {
                    input: 1,
                    cached_input: 1,
                    output: 1,
                },
            ),
            (
                ModelPattern::parse("gpt-4o*").unwrap(),
                Price {
                    input: 2,
                    cached_input: 2,
                    output: 2,
                },
            ),
        ]);
        assert_eq!(t.for_model("gpt-4o-mini").map(|p| p.input), Some(1));
        assert_eq!(t.for_model("gpt-4o-2024-08-06").map(|p| p.input), Some(2));
        assert_eq!(t.for_model("claude-3-5-haiku"), None);
    }
}
