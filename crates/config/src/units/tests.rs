//! Unit tests for humane durations, sizes and fractions.

use std::time::Duration;

use super::{
    format_duration, format_percent, format_size, parse_duration, parse_fraction, parse_size,
};

#[test]
fn durations_parse_with_every_unit_and_combinations() {
    let cases = [
        ("250ms", Duration::from_millis(250)),
        ("10s", Duration::from_secs(10)),
        ("5m", Duration::from_secs(300)),
        ("2h", Duration::from_secs(7_200)),
        ("7d", Duration::from_secs(604_800)),
        ("1m30s", Duration::from_secs(90)),
        ("1.5s", Duration::from_millis(1_500)),
        ("0s", Duration::ZERO),
        ("0", Duration::ZERO),
        (" 3s ", Duration::from_secs(3)),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
}

#[test]
fn bare_number_duration_asks_for_a_unit() {
    assert_eq!(
        parse_duration("10"),
        Err("invalid duration \"10\": add a unit, e.g. 10s or 10ms".to_owned())
    );
}

#[test]
fn malformed_durations_are_rejected() {
    for text in [
        "",
        "5 minutes",
        "10x",
        "s",
        ".5s",
        "5.s",
        "-1s",
        "1m 30s",
        "9999999999999d",
    ] {
        assert!(parse_duration(text).is_err(), "{text}");
    }
}

#[test]
fn durations_format_back_to_humane_text() {
    let cases = [
        (Duration::from_millis(250), "250ms"),
        (Duration::from_secs(90), "1m30s"),
        (Duration::from_secs(604_800), "7d"),
        (Duration::from_secs(300), "5m"),
        (Duration::ZERO, "0s"),
    ];
    for (duration, expected) in cases {
        assert_eq!(format_duration(duration), expected);
    }
}

#[test]
fn sizes_parse_binary_decimal_and_bare_bytes() {
    let cases = [
        ("256MiB", 256 << 20),
        ("4MiB", 4 << 20),
        ("1GiB", 1 << 30),
        ("512KiB", 512 << 10),
        ("1000", 1_000),
        ("10MB", 10_000_000),
        ("10 mb", 10_000_000),
        ("1.5KiB", 1_536),
        ("7B", 7),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_size(text), Ok(expected), "{text}");
    }
}

#[test]
fn malformed_sizes_are_rejected() {
    for text in ["", "MiB", "10 megs", "-1MiB", "99999999999TiB"] {
        assert!(parse_size(text).is_err(), "{text}");
    }
}

#[test]
fn sizes_format_with_the_largest_exact_unit() {
    assert_eq!(format_size(256 << 20), "256MiB");
    assert_eq!(format_size(10_000_000), "10MB");
    assert_eq!(format_size(1_001), "1001B");
    assert_eq!(format_size(0), "0B");
}

#[test]
fn fractions_parse_from_percentages_and_numbers() {
    assert_eq!(parse_fraction("10%"), Ok(0.1));
    assert_eq!(parse_fraction("99.9%"), Ok(0.999));
    assert_eq!(parse_fraction("0.2"), Ok(0.2));
    assert_eq!(parse_fraction("1"), Ok(1.0));
    for text in ["", "%", "ten", "1e2%", "inf", "NaN"] {
        assert!(parse_fraction(text).is_err(), "{text}");
    }
}

#[test]
fn fractions_format_as_percentages() {
    assert_eq!(format_percent(0.1), "10%");
    assert_eq!(format_percent(0.999), "99.9%");
}
