//! Humane units: durations (`250ms`, `10s`, `1m30s`, `7d`), sizes (`4MiB`,
//! `10MB`, `1000`) and fractions (`10%`, `0.1`), parsed and formatted back.
//!
//! Parsers return the complete message for the key on failure, without the
//! key path, which the caller adds.

use std::time::Duration;

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Duration units, largest first, as used when formatting.
const DURATION_UNITS: [(&str, u128); 5] = [
    ("d", 86_400 * NANOS_PER_SECOND),
    ("h", 3_600 * NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("s", NANOS_PER_SECOND),
    ("ms", NANOS_PER_MILLI),
];

/// Size units (lowercase), binary before decimal so formatting prefers them.
const SIZE_UNITS: [(&str, u128); 9] = [
    ("tib", 1 << 40),
    ("gib", 1 << 30),
    ("mib", 1 << 20),
    ("kib", 1 << 10),
    ("tb", 1_000_000_000_000),
    ("gb", 1_000_000_000),
    ("mb", 1_000_000),
    ("kb", 1_000),
    ("b", 1),
];

/// Parses a duration such as `250ms`, `10s`, `5m`, `2h`, `7d`, `1m30s` or
/// `1.5s`. A bare `0` is zero: only other bare numbers are ambiguous.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let looks_numeric = text.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c));
    if looks_numeric && text.parse::<f64>().is_ok() {
        return Err(format!(
            "invalid duration \"{text}\": add a unit, e.g. {text}s or {text}ms"
        ));
    }
    let invalid =
        || format!("invalid duration \"{text}\": use a number and a unit such as 250ms, 10s, 5m");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let (number, after_number) = split_number(rest).ok_or_else(invalid)?;
        let unit_length = after_number
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_length);
        let (_, unit_nanos) = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        nanos = scale(number, *unit_nanos)
            .and_then(|part| nanos.checked_add(part))
            .ok_or_else(|| format!("invalid duration \"{text}\": too large"))?;
        rest = after_unit;
    }
    let nanos =
        u64::try_from(nanos).map_err(|_| format!("invalid duration \"{text}\": too large"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration the way it would be written in the file: `250ms`,
/// `1m30s`, `7d`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos % NANOS_PER_MILLI != 0 {
        return format!("{duration:?}");
    }
    let mut formatted = String::new();
    for (unit, unit_nanos) in DURATION_UNITS {
        let count = nanos / unit_nanos;
        if count > 0 {
            formatted.push_str(&format!("{count}{unit}"));
            nanos %= unit_nanos;
        }
    }
    formatted
}

/// Parses a size: bytes (`1000`), binary (`512KiB`, `4MiB`, `1GiB`) or decimal
/// (`10MB`) units, case-insensitive, with an optional space before the unit.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let invalid = || {
        format!(
            "invalid size \"{text}\": use a number and a unit such as 512KiB, 4MiB, 1GiB or 10MB"
        )
    };
    let (number, unit) = split_number(text).ok_or_else(invalid)?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, multiplier)| *multiplier)
            .ok_or_else(invalid)?
    };
    scale(number, multiplier)
        .and_then(|bytes| u64::try_from(bytes).ok())
        .ok_or_else(|| format!("invalid size \"{text}\": too large"))
}

/// Formats a size with the largest unit that divides it: `256MiB`, `10MB`.
pub(crate) fn format_size(bytes: u64) -> String {
    let exact = SIZE_UNITS
        .iter()
        .find(|(_, multiplier)| u128::from(bytes) % multiplier == 0 && bytes > 0);
    match exact {
        Some((unit, multiplier)) if *multiplier > 1 => {
            let count = u128::from(bytes) / multiplier;
            let unit = match *unit {
                "tib" => "TiB",
                "gib" => "GiB",
                "mib" => "MiB",
                "kib" => "KiB",
                "tb" => "TB",
                "gb" => "GB",
                "mb" => "MB",
                _ => "KB",
            };
            format!("{count}{unit}")
        }
        _ => format!("{bytes}B"),
    }
}

/// Parses a fraction written as a percentage (`10%`, `99.9%`) or as a plain
/// number (`0.1`). Range checks are the caller's.
pub(crate) fn parse_fraction(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let invalid = || {
        format!("invalid fraction \"{text}\": use a percentage such as 10% or a number such as 0.1")
    };
    // Shifting the decimal point in the text ("99.9e-2") keeps 99.9% exactly
    // equal to the literal 0.999, which dividing by 100 would not.
    let parsed = match text.strip_suffix('%') {
        Some(percent) => {
            let percent = percent.trim_end();
            if percent.is_empty() || percent.contains(['e', 'E']) {
                return Err(invalid());
            }
            format!("{percent}e-2").parse::<f64>()
        }
        None => text.parse::<f64>(),
    };
    match parsed {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(invalid()),
    }
}

/// Formats a fraction as a percentage: `0.1` → `10%`, `0.999` → `99.9%`.
pub(crate) fn format_percent(fraction: f64) -> String {
    let percent = (fraction * 100.0 * 1e6).round() / 1e6;
    format!("{percent}%")
}

/// A non-negative decimal number at the start of `text`, split into its whole
/// and fractional digits, and the rest of the text.
fn split_number(text: &str) -> Option<((&str, &str), &str)> {
    let whole_length = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (whole, rest) = text.split_at(whole_length);
    let Some(after_point) = rest.strip_prefix('.') else {
        return (!whole.is_empty()).then_some(((whole, ""), rest));
    };
    let fraction_length = after_point
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after_point.len());
    let (fraction, rest) = after_point.split_at(fraction_length);
    (!whole.is_empty() && !fraction.is_empty()).then_some(((whole, fraction), rest))
}

/// `whole.fraction × unit`, rounded down, or `None` on overflow.
fn scale((whole, fraction): (&str, &str), unit: u128) -> Option<u128> {
    let whole: u128 = whole.parse().ok()?;
    let mut total = whole.checked_mul(unit)?;
    // Digits beyond 18 cannot change the result for any unit used here.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().ok()?;
        let denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        total = total.checked_add(numerator.checked_mul(unit)? / denominator)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests;
