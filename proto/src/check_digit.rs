//! Check digits of the codes that appear in or near notices.
//!
//! - Municipality codes (全国地方公共団体コード, JIS X 0402): five digits plus a modulus-11
//!   check digit.
//! - Individual numbers (個人番号, "My Number"): eleven digits plus a check digit defined by the
//!   ordinance of the Ministry of Internal Affairs (総務省令第85号). Used only by the
//!   personal-data guard, to *refuse* notices that contain one.

/// The JIS X 0402 check digit for the first five digits of a municipality code, or `None` if
/// the input is not five ASCII digits.
pub fn municipality_check_digit(first5: &str) -> Option<u8> {
    let b = first5.as_bytes();
    if b.len() != 5 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Weights 6,5,4,3,2 from the left; r = sum mod 11; the check digit is the last digit of
    // 11 - r (so r = 0 gives 1 and r = 1 gives 0).
    let sum: u32 = b
        .iter()
        .zip([6u32, 5, 4, 3, 2])
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    Some(((11 - sum % 11) % 10) as u8)
}

/// Whether `code` is six ASCII digits whose last digit is the JIS X 0402 check digit.
pub fn municipality_code_is_valid(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() != 6 || !b[5].is_ascii_digit() {
        return false;
    }
    municipality_check_digit(&code[..5]) == Some(b[5] - b'0')
}

/// The individual-number (個人番号) check digit for the first eleven digits, or `None` if the
/// input is not eleven ASCII digits.
pub fn individual_number_check_digit(first11: &str) -> Option<u8> {
    let b = first11.as_bytes();
    if b.len() != 11 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Pn is the n-th digit counted from the right of the 11 (n = 1..=11);
    // Qn = n + 1 for n <= 6, n - 5 for n >= 7. check = 11 - (sum(Pn*Qn) mod 11), or 0 when
    // the remainder is 0 or 1.
    let sum: u32 = (1..=11u32)
        .map(|n| {
            let p = u32::from(b[11 - n as usize] - b'0');
            let q = if n <= 6 { n + 1 } else { n - 5 };
            p * q
        })
        .sum();
    let r = sum % 11;
    Some(if r <= 1 { 0 } else { (11 - r) as u8 })
}

/// Whether `s` is exactly twelve ASCII digits that pass the individual-number check digit.
pub fn is_individual_number(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b.iter().all(u8::is_ascii_digit)
        && individual_number_check_digit(&s[..11]) == Some(b[11] - b'0')
}

/// Every maximal run of exactly twelve ASCII digits in `s` (a run not touching another digit)
/// that passes the individual-number check digit, as byte ranges.
pub fn find_individual_numbers(s: &str) -> Vec<std::ops::Range<usize>> {
    individual_numbers(s).collect()
}

/// Whether [`find_individual_numbers`] finds anything in `s`, stopping at the first (the
/// personal-data check of every string of every notice ingested asks only this).
pub fn contains_individual_number(s: &str) -> bool {
    s.len() >= 12 && individual_numbers(s).next().is_some()
}

/// The runs [`find_individual_numbers`] reports, found lazily.
fn individual_numbers(s: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            if b[i].is_ascii_digit() {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i - start == 12 && is_individual_number(&s[start..i]) {
                    return Some(start..i);
                }
            } else {
                i += 1;
            }
        }
        None
    })
}

/// `s` with every run [`find_individual_numbers`] reports replaced by twelve `*`, so error
/// messages that quote input never repeat an individual number back (and into logs).
pub fn redact_individual_numbers(s: &str) -> std::borrow::Cow<'_, str> {
    let found = find_individual_numbers(s);
    if found.is_empty() {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for r in found {
        out.push_str(&s[last..r.start]);
        out.push_str("************");
        last = r.end;
    }
    out.push_str(&s[last..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_municipality_codes() {
        for good in ["131016", "011002", "271004", "012025", "472018"] {
            assert!(municipality_code_is_valid(good), "{good}");
        }
        for bad in ["131017", "011001", "13101", "1310166", "13101a", ""] {
            assert!(!municipality_code_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn individual_number_check_digit_known_value() {
        // 12345678901: P1..P11 (from the right) = 1,0,9,8,7,6,5,4,3,2,1, Q = 2,3,4,5,6,7,2,3,4,5,6:
        // 2+0+36+40+42+42+10+12+12+10+6 = 212; 212 % 11 = 3; check = 11 - 3 = 8.
        assert_eq!(individual_number_check_digit("12345678901"), Some(8));
        assert!(is_individual_number("123456789018"));
        assert!(!is_individual_number("123456789012"));
        assert_eq!(find_individual_numbers("x123456789018y"), vec![1..13]);
        assert!(
            find_individual_numbers("1234567890123").is_empty(),
            "13-digit run is not a 12-digit number"
        );
    }

    #[test]
    fn contains_agrees_with_find() {
        for (s, found) in [
            ("", false),
            ("12345678901", false),
            ("123456789018", true),
            ("123456789012", false),
            ("x123456789018y", true),
            ("1234567890180", false),
            ("0123456789018", false),
            ("123456789012 123456789018", true),
            ("2026-12-06T09:00:00.123456+09:00", false),
            ("000000000000001", false),
        ] {
            assert_eq!(contains_individual_number(s), found, "{s}");
            assert_eq!(!find_individual_numbers(s).is_empty(), found, "{s}");
        }
    }
}
