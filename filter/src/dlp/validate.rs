//! Checksums and numbering rules that turn a digit shape into a match:
//! Luhn (cards), ISO 13616 mod 97 and lengths (IBANs), the SSA's rules (US
//! social security numbers), the NANP's (North American phone numbers).
//!
//! Invariant: pure functions of their digits; nothing here panics, whatever
//! the input.

/// The Luhn checksum holds for `digits` (values 0–9, most significant
/// first).
pub(super) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &d) in digits.iter().rev().enumerate() {
        let d = u32::from(d);
        sum += if k % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
    }
    let last_digit = sum % 10;
    !digits.is_empty() && last_digit == 0
}

/// IBAN lengths by country, from the SWIFT IBAN registry.
const IBAN_LENGTHS: [(u8, &[u8]); 18] = [
    (15, b"NO"),
    (16, b"BE"),
    (18, b"DKFIFKFOGLNLSD"),
    (19, b"MKSI"),
    (20, b"ATBAEEKZLTLUMNXK"),
    (21, b"CHHRLILV"),
    (22, b"BGBHCRDEGBGEIEMERSVA"),
    (23, b"AEGIILIQOMSOTL"),
    (24, b"ADCZESMDPKROSASESKTNVG"),
    (25, b"LYPTST"),
    (26, b"ISTR"),
    (27, b"BIDJFRGRITMCMRSM"),
    (28, b"ALAZBYCYDOGTHNHULBNIPLSV"),
    (29, b"BREGPSQAUA"),
    (30, b"JOKWMUYE"),
    (31, b"MTSC"),
    (32, b"LC"),
    (33, b"RU"),
];

/// The IBAN length registered for country `cc` (uppercase).
pub(super) fn iban_length(cc: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS.iter().find_map(|&(len, codes)| {
        codes
            .chunks_exact(2)
            .any(|c| c.first() == Some(&cc[0]) && c.get(1) == Some(&cc[1]))
            .then_some(usize::from(len))
    })
}

/// ISO 7064 mod 97-10 over an alphanumeric string fed one character at a
/// time (letters count as 10–35, either case).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mod97(u32);

impl Mod97 {
    /// Feeds one ASCII alphanumeric; false for any other byte.
    pub(super) fn push(&mut self, b: u8) -> bool {
        self.0 = match b {
            b'0'..=b'9' => (self.0 * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (self.0 * 100 + u32::from(b - b'A') + 10) % 97,
            b'a'..=b'z' => (self.0 * 100 + u32::from(b - b'a') + 10) % 97,
            _ => return false,
        };
        true
    }

    /// The remainder is 1, as a valid IBAN's is.
    pub(super) fn valid(self) -> bool {
        self.0 == 1
    }
}

/// `d` (nine digits, `AAAGGSSSS`) is a social security number the SSA
/// could have issued: area not 000, 666 or 900–999; group not 00; serial
/// not 0000. Also refused, as Presidio does: all nine digits the same, and
/// the numbers published as examples (078-05-1120, the Woolworth wallet
/// card; 123-45-6789; 219-09-9999).
pub(super) fn ssn(d: &[u8]) -> bool {
    let Some(&[a0, a1, a2, g0, g1, s0, s1, s2, s3]) = d.get(..9) else {
        return false;
    };
    let area = u16::from(a0) * 100 + u16::from(a1) * 10 + u16::from(a2);
    let valid_area = area != 0 && area != 666 && area < 900;
    let valid_group = (g0, g1) != (0, 0);
    let valid_serial = (s0, s1, s2, s3) != (0, 0, 0, 0);
    let all_same = d.iter().take(9).all(|&x| x == a0);
    let published = [
        [0, 7, 8, 0, 5, 1, 1, 2, 0],
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
        [2, 1, 9, 0, 9, 9, 9, 9, 9],
    ]
    .iter()
    .any(|p| d.get(..9) == Some(&p[..]));
    valid_area && valid_group && valid_serial && !all_same && !published
}

/// A North American area code and exchange code may start with these
/// digits: 2–9 (0 and 1 are reserved for operator and trunk prefixes).
pub(super) fn nanp(area_first: u8, exchange_first: u8) -> bool {
    (2..=9).contains(&area_first) && (2..=9).contains(&exchange_first)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn digits(s: &str) -> Vec<u8> {
        s.bytes().map(|b| b - b'0').collect()
    }

    #[test]
    fn luhn_accepts_test_cards_and_rejects_one_digit_off() {
        for card in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "0",
        ] {
            assert!(luhn(&digits(card)), "{card}");
        }
        assert!(!luhn(&digits("4111111111111112")));
        assert!(!luhn(&[]));
    }

    #[test]
    fn iban_lengths_cover_the_registry() {
        assert_eq!(iban_length(*b"GB"), Some(22));
        assert_eq!(iban_length(*b"NO"), Some(15));
        assert_eq!(iban_length(*b"RU"), Some(33));
        assert_eq!(iban_length(*b"DE"), Some(22));
        assert_eq!(iban_length(*b"US"), None);
        assert_eq!(iban_length(*b"KF"), None, "codes are matched on pairs");
        let n: usize = IBAN_LENGTHS.iter().map(|(_, c)| c.len() / 2).sum();
        assert_eq!(n, 89);
    }

    #[test]
    fn mod97_validates_an_example_iban() {
        let mut m = Mod97::default();
        for &b in b"WEST12345698765432GB82" {
            assert!(m.push(b));
        }
        assert!(m.valid());
        assert!(!Mod97::default().push(b'-'));
    }

    #[test]
    fn ssn_rules_follow_the_ssa() {
        assert!(ssn(&digits("536225555")));
        assert!(ssn(&digits("899451234")));
        for bad in [
            "000451234",
            "666451234",
            "900451234",
            "999451234",
            "536005555",
            "536220000",
            "111111111",
            "078051120",
            "123456789",
            "219099999",
            "53622",
        ] {
            assert!(!ssn(&digits(bad)), "{bad}");
        }
    }

    #[test]
    fn nanp_codes_start_with_two_to_nine() {
        assert!(nanp(4, 5));
        assert!(!nanp(1, 5));
        assert!(!nanp(4, 0));
    }
}
