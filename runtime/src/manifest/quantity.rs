//! Kubernetes resource quantities (`64Mi`, `1G`, `500m`, `0.5`, `1e3`).

/// Parses a quantity into its value scaled by `scale` (1 for bytes, 1000 for
/// millicores), rounding up as the API server does. `None` if malformed.
pub(crate) fn parse(text: &str, scale: u64) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (number, suffix) = match suffix.strip_prefix(['e', 'E']) {
        Some(exponent) if !exponent.is_empty() => {
            let exponent: i32 = exponent.parse().ok()?;
            (number, Multiplier::Decimal(exponent))
        }
        _ => (number, Multiplier::from_suffix(suffix)?),
    };
    if number.is_empty() || number.starts_with('.') && number.len() == 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scaled = value * suffix.factor() * scale as f64;
    if !scaled.is_finite() || scaled < 0.0 || scaled > u64::MAX as f64 {
        return None;
    }
    Some(scaled.ceil() as u64)
}

enum Multiplier {
    Binary(u32),
    Decimal(i32),
}

impl Multiplier {
    fn from_suffix(suffix: &str) -> Option<Multiplier> {
        Some(match suffix {
            "" => Multiplier::Decimal(0),
            "m" => Multiplier::Decimal(-3),
            "k" => Multiplier::Decimal(3),
            "M" => Multiplier::Decimal(6),
            "G" => Multiplier::Decimal(9),
            "T" => Multiplier::Decimal(12),
            "P" => Multiplier::Decimal(15),
            "E" => Multiplier::Decimal(18),
            "Ki" => Multiplier::Binary(10),
            "Mi" => Multiplier::Binary(20),
            "Gi" => Multiplier::Binary(30),
            "Ti" => Multiplier::Binary(40),
            "Pi" => Multiplier::Binary(50),
            "Ei" => Multiplier::Binary(60),
            _ => return None,
        })
    }

    fn factor(&self) -> f64 {
        match *self {
            Multiplier::Binary(shift) => (1u64 << shift) as f64,
            Multiplier::Decimal(exponent) => 10f64.powi(exponent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn check(text: &str, scale: u64, expected: Option<u64>) {
        assert_eq!(parse(text, scale), expected, "{text:?}");
    }

    #[test]
    fn memory() {
        check("64Mi", 1, Some(64 << 20));
        check("1G", 1, Some(1_000_000_000));
        check("128974848", 1, Some(128_974_848));
        check("129e6", 1, Some(129_000_000));
        check("1.5Ki", 1, Some(1536));
        check("12 apples", 1, None);
        check("Mi", 1, None);
        check("-1Mi", 1, None);
    }

    #[test]
    fn cpu() {
        check("500m", 1000, Some(500));
        check("1", 1000, Some(1000));
        check("0.25", 1000, Some(250));
        check("1.0001m", 1000, Some(2));
    }
}
