//! Kubernetes resource quantities (`64Mi`, `1G`, `500m`, `0.5`, `1e3`), read
//! exactly as the API server reads them.
//!
//! A quantity is a decimal number with an optional sign and a suffix: a
//! decimal SI one (`n` `u` `m` `""` `k` `M` `G` `T` `P` `E`), a binary SI one
//! (`Ki` `Mi` `Gi` `Ti` `Pi` `Ei`) or a decimal exponent (`e3`, `E-2`). The
//! API server keeps it to the nano unit, rounding up ("if you want some
//! resources, you should get some"), and so does this module, in integer
//! decimal arithmetic: `9m` is 9 millicores, `4.03` is 4030m, `0.1` bytes is
//! 1 byte. A negative quantity, or one above 2^63 - 1 (the API server's
//! largest), is an error.

use std::fmt;

/// The largest value, as the API server's: 2^63 - 1 (about 8Ei, or 9.2E).
const MAX_VALUE: u128 = i64::MAX as u128;
const NANOS_PER_UNIT: u128 = 1_000_000_000;
const MAX_NANOS: u128 = MAX_VALUE * NANOS_PER_UNIT;

/// Why a text is not a usable quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QuantityError {
    #[error("is not a quantity")]
    Malformed,
    #[error("must not be negative")]
    Negative,
    #[error("is too large (the most is 2^63 - 1, about 8Ei)")]
    TooLarge,
}

/// Parses a quantity of bytes (memory, sizes), rounded up to a whole byte.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text)?.scaled(NANOS_PER_UNIT)
}

/// Parses a quantity of CPUs into millicores, rounded up.
pub(crate) fn parse_millis(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text)?.scaled(NANOS_PER_UNIT / 1000)
}

/// The API server's canonical form of a quantity: `1000m` is `1`, `1024Mi`
/// is `1Gi`, `1.5Gi` is `1536Mi`, `0.1` is `100m`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn canonical(text: &str) -> Result<String, QuantityError> {
    Ok(Quantity::parse(text)?.to_string())
}

/// `bytes` as the API server would show it: in binary units when it is a
/// whole number of KiB (`64Mi`), else in decimal ones (`100M`, `1500`).
pub(crate) fn show_bytes(bytes: u64) -> String {
    let format = if bytes >= 1024 && bytes.is_multiple_of(1024) {
        Format::BinarySI
    } else {
        Format::DecimalSI
    };
    Quantity {
        nanos: u128::from(bytes) * NANOS_PER_UNIT,
        format,
    }
    .to_string()
}

/// `millis` millicores as the API server would show them (`500m`, `2`).
pub(crate) fn show_millis(millis: u64) -> String {
    Quantity {
        nanos: u128::from(millis) * (NANOS_PER_UNIT / 1000),
        format: Format::DecimalSI,
    }
    .to_string()
}

/// A parsed, non-negative quantity, in nano units, with the kind of suffix it
/// was written with (which decides its canonical form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quantity {
    nanos: u128,
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

impl Quantity {
    fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let integer_len = leading_digits(unsigned);
        let (integer, rest) = unsigned.split_at(integer_len);
        let (fraction, suffix) = match rest.strip_prefix('.') {
            Some(after_point) => after_point.split_at(leading_digits(after_point)),
            None => ("", rest),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(QuantityError::Malformed);
        }
        let (format, exponent, binary_shift) = interpret(suffix)?;
        // value = digits × 10^exponent × 2^binary_shift, digits without a point.
        let digits = integer.bytes().chain(fraction.bytes()).map(|b| b - b'0');
        let mut digits: Vec<u8> = digits.skip_while(|d| *d == 0).collect();
        if digits.is_empty() {
            return Ok(Quantity { nanos: 0, format });
        }
        if negative {
            return Err(QuantityError::Negative);
        }
        let mut exponent = i64::from(exponent) - fraction.len() as i64;
        while digits.last() == Some(&0) {
            digits.pop();
            exponent += 1;
        }
        // The leading digit alone is worth 10^(len - 1 + exponent); 10^19 is
        // past the largest value. This bounds the work below.
        if digits.len() as i64 - 1 + exponent >= 19 {
            return Err(QuantityError::TooLarge);
        }
        for _ in 0..binary_shift / 10 {
            multiply(&mut digits, 1024);
        }
        let nanos = round_up(&digits, exponent + 9).ok_or(QuantityError::TooLarge)?;
        if nanos > MAX_NANOS {
            return Err(QuantityError::TooLarge);
        }
        Ok(Quantity { nanos, format })
    }

    /// The value in units of `nanos_per_unit` nano units, rounded up.
    fn scaled(&self, nanos_per_unit: u128) -> Result<u64, QuantityError> {
        u64::try_from(self.nanos.div_ceil(nanos_per_unit)).map_err(|_| QuantityError::TooLarge)
    }
}

/// The suffix's kind, decimal exponent and binary exponent.
fn interpret(suffix: &str) -> Result<(Format, i32, u32), QuantityError> {
    let decimal = |exponent| Ok((Format::DecimalSI, exponent, 0));
    let binary = |shift| Ok((Format::BinarySI, 0, shift));
    match suffix {
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .ok_or(QuantityError::Malformed)?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || leading_digits(digits) != digits.len() {
                return Err(QuantityError::Malformed);
            }
            // Past ±10^9 the value is either far too large or rounds up to 1n.
            let exponent: i32 = exponent.parse().unwrap_or(if exponent.starts_with('-') {
                -2_000_000_000
            } else {
                2_000_000_000
            });
            Ok((Format::DecimalExponent, exponent, 0))
        }
    }
}

fn leading_digits(text: &str) -> usize {
    text.bytes().take_while(u8::is_ascii_digit).count()
}

/// Multiplies the decimal number `digits` (most significant first) by `factor`.
fn multiply(digits: &mut Vec<u8>, factor: u32) {
    let mut carry = 0u32;
    for digit in digits.iter_mut().rev() {
        let product = u32::from(*digit) * factor + carry;
        *digit = (product % 10) as u8;
        carry = product / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

/// `digits × 10^exponent`, rounded up to an integer; `None` past `u128`.
fn round_up(digits: &[u8], exponent: i64) -> Option<u128> {
    let (whole, fraction): (&[u8], &[u8]) = if exponent >= 0 {
        (digits, &[])
    } else {
        let point = digits
            .len()
            .saturating_sub(exponent.unsigned_abs() as usize);
        digits.split_at(point)
    };
    let mut value: u128 = 0;
    for digit in whole {
        value = value.checked_mul(10)?.checked_add(u128::from(*digit))?;
    }
    for _ in 0..exponent.max(0) {
        value = value.checked_mul(10)?;
    }
    if fraction.iter().any(|digit| *digit != 0) {
        value = value.checked_add(1)?;
    }
    Some(value)
}

impl fmt::Display for Quantity {
    /// The API server's canonical form (`CanonicalizeBytes` in apimachinery).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        // A binary quantity is shown in binary units only when it is a whole
        // number of at least 1024; else as a decimal one, without rounding.
        if self.format == Format::BinarySI
            && self.nanos >= 1024 * NANOS_PER_UNIT
            && self.nanos.is_multiple_of(NANOS_PER_UNIT)
        {
            let mut value = self.nanos / NANOS_PER_UNIT;
            let mut power = 0;
            while value.is_multiple_of(1024) && power < 6 {
                value /= 1024;
                power += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
            return write!(f, "{value}{suffix}");
        }
        // A mantissa with no trailing zeros and an exponent that is a
        // multiple of 3 (as Go's `%`, the remainder keeps the sign).
        let (mut mantissa, mut exponent) = (self.nanos, -9i32);
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent += 1;
        }
        match exponent % 3 {
            1 | -2 => {
                mantissa *= 10;
                exponent -= 1;
            }
            2 | -1 => {
                mantissa *= 100;
                exponent -= 2;
            }
            _ => {}
        }
        if self.format == Format::DecimalExponent {
            return match exponent {
                0 => write!(f, "{mantissa}"),
                _ => write!(f, "{mantissa}e{exponent}"),
            };
        }
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        write!(f, "{mantissa}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuantityError::{Malformed, Negative, TooLarge};

    #[track_caller]
    fn bytes(text: &str, expected: Result<u64, QuantityError>) {
        assert_eq!(parse_bytes(text), expected, "{text:?}");
    }

    #[track_caller]
    fn millis(text: &str, expected: Result<u64, QuantityError>) {
        assert_eq!(parse_millis(text), expected, "{text:?}");
    }

    /// `text`'s canonical form is `expected`, which means the same.
    #[track_caller]
    fn check(text: &str, expected: &str) {
        assert_eq!(canonical(text).as_deref(), Ok(expected), "{text:?}");
        assert_eq!(
            Quantity::parse(expected).map(|q| q.nanos),
            Quantity::parse(text).map(|q| q.nanos),
            "{text:?}"
        );
    }

    #[test]
    fn memory() {
        bytes("64Mi", Ok(64 << 20));
        bytes("1G", Ok(1_000_000_000));
        bytes("128974848", Ok(128_974_848));
        bytes("129e6", Ok(129_000_000));
        bytes("129E6", Ok(129_000_000));
        bytes("1e3", Ok(1000));
        bytes("1e+3", Ok(1000));
        bytes("1.5Ki", Ok(1536));
        bytes("0.5Gi", Ok(512 << 20));
        bytes("0.1", Ok(1));
        bytes("1m", Ok(1));
        bytes("1500m", Ok(2));
        bytes("1n", Ok(1));
        bytes("1u", Ok(1));
        bytes("123Mi", Ok(123 << 20));
        bytes("1Ti", Ok(1 << 40));
        bytes("1Pi", Ok(1 << 50));
        bytes("7Ei", Ok(7 << 60));
        bytes("2k", Ok(2000));
        bytes("3M", Ok(3_000_000));
        bytes("4T", Ok(4_000_000_000_000));
        bytes("5P", Ok(5_000_000_000_000_000));
        bytes("9E", Ok(9_000_000_000_000_000_000));
        bytes("+1Ki", Ok(1024));
        bytes("5.", Ok(5));
        bytes(".5Ki", Ok(512));
        bytes("0001.000Ki", Ok(1024));
        bytes("0", Ok(0));
        bytes("0Mi", Ok(0));
        bytes("-0", Ok(0));
        bytes("0.0000000000001Ki", Ok(1));
        bytes("1e-3", Ok(1));
        bytes("1e-999999999999", Ok(1));
        bytes("0e999999999999", Ok(0));
        bytes("9223372036854775807", Ok(i64::MAX as u64));
        bytes("9223372036854775807.000", Ok(i64::MAX as u64));
    }

    #[test]
    fn cpu() {
        millis("500m", Ok(500));
        millis("9m", Ok(9));
        millis("1", Ok(1000));
        millis("0.25", Ok(250));
        millis("4.03", Ok(4030));
        millis("0.001", Ok(1));
        millis("0.0001", Ok(1));
        millis("1.0001m", Ok(2));
        millis("100u", Ok(1));
        millis("1000000n", Ok(1));
        millis("1000001n", Ok(2));
        millis("2e-3", Ok(2));
        millis("1k", Ok(1_000_000));
        millis("0.1Ki", Ok(102_400));
    }

    #[test]
    fn malformed() {
        bytes("", Err(Malformed));
        bytes("lots", Err(Malformed));
        bytes("12 apples", Err(Malformed));
        bytes("Mi", Err(Malformed));
        bytes(".", Err(Malformed));
        bytes("+", Err(Malformed));
        bytes("-", Err(Malformed));
        bytes(".Mi", Err(Malformed));
        bytes("1MB", Err(Malformed));
        bytes("1K", Err(Malformed));
        bytes("1mi", Err(Malformed));
        bytes("1e", Err(Malformed));
        bytes("1e+", Err(Malformed));
        bytes("1e3.5", Err(Malformed));
        bytes("1Ee3", Err(Malformed));
        bytes("1.2.3", Err(Malformed));
        bytes(" 1", Err(Malformed));
        bytes("1 ", Err(Malformed));
        bytes("1 Mi", Err(Malformed));
        bytes("++1", Err(Malformed));
        bytes("0x10", Err(Malformed));
        bytes("inf", Err(Malformed));
        bytes("NaN", Err(Malformed));
        bytes("１", Err(Malformed));
    }

    #[test]
    fn negative() {
        bytes("-1Mi", Err(Negative));
        bytes("-0.001", Err(Negative));
        millis("-1m", Err(Negative));
    }

    #[test]
    fn too_large() {
        bytes("9223372036854775808", Err(TooLarge));
        bytes("9223372036854775807.5", Err(TooLarge));
        bytes("8Ei", Err(TooLarge));
        bytes("10E", Err(TooLarge));
        bytes("1e19", Err(TooLarge));
        bytes("1e999999999999", Err(TooLarge));
        bytes(&format!("1{}", "0".repeat(10_000)), Err(TooLarge));
        bytes("99999999999999999999999999999999999999999Ei", Err(TooLarge));
        // Fits as a quantity, but not in millicores as a u64.
        millis("9223372036854775807", Err(TooLarge));
        millis("18446744073709551", Ok(18_446_744_073_709_551_000));
        millis("18446744073709552", Err(TooLarge));
    }

    #[test]
    fn long_fractions_are_exact() {
        bytes(&format!("0.{}1", "0".repeat(100_000)), Ok(1));
        bytes(&format!("1.{}", "0".repeat(100_000)), Ok(1));
        bytes(&format!("1.{}1", "0".repeat(100_000)), Ok(2));
        millis(
            &format!("{}.{}", "1".repeat(15), "9".repeat(50)),
            Ok(111_111_111_111_111_000 + 1000),
        );
    }

    #[test]
    fn canonical_forms() {
        check("1000m", "1");
        check("1024Mi", "1Gi");
        check("1.5Gi", "1536Mi");
        check("1.5Ki", "1536");
        check("0.5Ki", "512");
        check("1Ki", "1Ki");
        check("1048576", "1048576");
        check("1000", "1k");
        check("1500", "1500");
        check("1.5", "1500m");
        check("0.1", "100m");
        check("100m", "100m");
        check("0.0001", "100u");
        check("1n", "1n");
        check("0.0000000001", "1n");
        check("1e3", "1e3");
        check("1E3", "1e3");
        check("1.5e3", "1500");
        check("1e-3", "1e-3");
        check("12e6", "12e6");
        check("123e5", "12300e3");
        check("64Mi", "64Mi");
        check("65536Ki", "64Mi");
        check("1G", "1G");
        check("1000M", "1G");
        check("0", "0");
        check("0Gi", "0");
        check("-0", "0");
        check("+5", "5");
        check("007", "7");
        check("2.50", "2500m");
        check("8191Pi", "8191Pi");
        check("1.1Ki", "1126400m");
    }

    #[test]
    fn shown_values() {
        assert_eq!(show_bytes(64 << 20), "64Mi");
        assert_eq!(show_bytes(100_000_000), "100M");
        assert_eq!(show_bytes(1536), "1536");
        assert_eq!(show_bytes(512), "512");
        assert_eq!(show_bytes(0), "0");
        assert_eq!(show_millis(500), "500m");
        assert_eq!(show_millis(2000), "2");
        assert_eq!(show_millis(2500), "2500m");
    }
}
