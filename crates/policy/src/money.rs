//! Money as integer micro-dollars (1 USD = 1,000,000), with checked arithmetic on every path:
//! a price or a cap that does not fit is an error, never a wrapped number.

/// Micro-dollars per US dollar.
pub const MICROS_PER_USD: u64 = 1_000_000;

const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;

/// Parses a decimal US dollar amount (`"12.50"`, `"0.000001"`) into micro-dollars.
///
/// At most six decimals; no sign, no exponent, no currency symbol.
pub fn parse_usd(text: &str) -> Option<u64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() || fraction.len() > 6 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut micros_fraction = 0u64;
    for (i, digit) in fraction.bytes().enumerate() {
        let place = 10u64.pow(5 - i as u32);
        micros_fraction += u64::from(digit - b'0') * place;
    }
    whole
        .checked_mul(MICROS_PER_USD)?
        .checked_add(micros_fraction)
}

/// Converts a TOML number or string in US dollars to micro-dollars.
///
/// Floats go through their shortest decimal form, so `2.5` is exactly 2,500,000.
pub fn usd_from_toml(value: &toml::Value) -> Option<u64> {
    match value {
        toml::Value::Integer(i) => u64::try_from(*i).ok()?.checked_mul(MICROS_PER_USD),
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => {
            let text = format!("{f}");
            if text.contains(['e', 'E']) {
                return None;
            }
            parse_usd(&text)
        }
        toml::Value::String(s) => parse_usd(s),
        _ => None,
    }
}

/// Formats micro-dollars as dollars with six decimals: `12.500000`.
pub fn format_usd(micros: u64) -> String {
    format!("{}.{:06}", micros / MICROS_PER_USD, micros % MICROS_PER_USD)
}

/// The cost of `tokens` at `micros_per_million` micro-dollars per million tokens, rounded up
/// so that an estimate never undercounts. `None` on overflow.
pub fn token_cost(tokens: u64, micros_per_million: u64) -> Option<u64> {
    let product = u128::from(tokens).checked_mul(u128::from(micros_per_million))?;
    u64::try_from(product.div_ceil(TOKENS_PER_PRICE_UNIT)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dollars_exactly() {
        assert_eq!(parse_usd("12.50"), Some(12_500_000));
        assert_eq!(parse_usd("0.000001"), Some(1));
        assert_eq!(parse_usd("5"), Some(5_000_000));
        assert_eq!(
            parse_usd("18446744073709"),
            Some(18_446_744_073_709_000_000)
        );
        for bad in ["", ".5", "1.0000001", "-1", "1e3", "$5", "18446744073710"] {
            assert_eq!(parse_usd(bad), None, "{bad}");
        }
        assert_eq!(usd_from_toml(&toml::Value::Float(0.15)), Some(150_000));
        assert_eq!(usd_from_toml(&toml::Value::Float(2.5)), Some(2_500_000));
        assert_eq!(usd_from_toml(&toml::Value::Integer(-1)), None);
        assert_eq!(usd_from_toml(&toml::Value::Float(1e300)), None);
    }

    #[test]
    fn token_cost_rounds_up_and_checks_overflow() {
        assert_eq!(token_cost(1_000_000, 2_500_000), Some(2_500_000));
        assert_eq!(token_cost(1, 150_000), Some(1));
        assert_eq!(token_cost(0, 150_000), Some(0));
        assert_eq!(token_cost(u64::MAX, u64::MAX), None);
        assert_eq!(format_usd(12_500_001), "12.500001");
    }
}
