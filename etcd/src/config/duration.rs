//! Go `time.Duration` syntax: `300ms`, `1.5h`, `2h45m`, `1m30s`, `0`.
//!
//! etcd's duration flags go through Go's `time.ParseDuration`, so unit files carry that
//! syntax; [`parse_go_duration`] accepts the same strings (negative values are refused,
//! nothing in etcd's configuration means anything by them) and [`format_go_duration`]
//! prints the way Go's `Duration.String` does, for help text and log summaries.

use std::time::Duration;

/// Largest duration Go can represent (`math.MaxInt64` nanoseconds, about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Nanoseconds per unit, for each unit Go accepts.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parses a duration in Go syntax: a sequence of decimal numbers, each with an optional
/// fraction and a unit suffix (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`); `0` alone needs no
/// unit. Returns a message suitable for "invalid value" errors on failure.
pub fn parse_go_duration(input: &str) -> Result<Duration, String> {
    let mut s = input;
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    } else if s.starts_with('-') {
        if s.len() > 1 && s.bytes().skip(1).all(|c| c == b'0') {
            return Ok(Duration::ZERO);
        }
        return Err(format!("negative duration {input:?} is not allowed"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(format!("invalid duration {input:?}"));
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, rest) = s.split_at(int_len);
        s = rest;
        // Optional fraction.
        let mut frac_digits = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (f, r) = rest.split_at(frac_len);
            frac_digits = f;
            s = r;
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(format!("invalid duration {input:?}"));
        }
        // Unit: everything up to the next digit or dot.
        let unit_len = s
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        if unit.is_empty() {
            return Err(format!("missing unit in duration {input:?}"));
        }
        let per_unit = unit_nanos(unit)
            .ok_or_else(|| format!("unknown unit {unit:?} in duration {input:?}"))?;
        let overflow = || format!("invalid duration {input:?}: too large");
        let mut value: u128 = 0;
        for d in int_digits.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(d - b'0')))
                .filter(|v| *v <= MAX_NANOS)
                .ok_or_else(overflow)?;
        }
        let mut nanos = value.checked_mul(per_unit).ok_or_else(overflow)?;
        if !frac_digits.is_empty() {
            // Only the first 18 fraction digits can matter for nanosecond precision.
            let digits = &frac_digits[..frac_digits.len().min(18)];
            let mut frac: u128 = 0;
            for d in digits.bytes() {
                frac = frac * 10 + u128::from(d - b'0');
            }
            let scale = 10u128.pow(u32::try_from(digits.len()).unwrap_or(18));
            nanos += frac * per_unit / scale;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        if total > MAX_NANOS {
            return Err(overflow());
        }
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| format!("invalid duration {input:?}"))?;
    let sub = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, sub))
}

/// Formats like Go's `Duration.String`: `0s`, `100ms`, `1.5s`, `10m0s`, `2h0m0s`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, per) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(nanos, per));
    }
    let hours = nanos / 3_600_000_000_000;
    let rem = nanos % 3_600_000_000_000;
    let minutes = rem / 60_000_000_000;
    let secs = decimal(rem % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / per` as a decimal without trailing zeros in the fraction.
fn decimal(value: u128, per: u128) -> String {
    let whole = value / per;
    let frac = value % per;
    if frac == 0 {
        return whole.to_string();
    }
    let width = per.to_string().len() - 1;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        let ok = [
            ("0", Duration::ZERO),
            ("5s", Duration::from_secs(5)),
            ("100ms", Duration::from_millis(100)),
            ("2h", Duration::from_secs(7200)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("2h45m", Duration::from_secs(2 * 3600 + 45 * 60)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("+3s", Duration::from_secs(3)),
            ("-0", Duration::ZERO),
            ("1h0m0s", Duration::from_secs(3600)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_go_duration(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for s in ["", "5", "abc", "1x", "-1s", "1.s.", ".", "s", "9999999999h"] {
            assert!(parse_go_duration(s).is_err(), "{s:?} should fail");
        }
        assert!(parse_go_duration("5").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(600), "10m0s"),
            (Duration::from_secs(7200), "2h0m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(42), "42ns"),
        ];
        for (d, want) in cases {
            assert_eq!(format_go_duration(d), want);
            assert_eq!(parse_go_duration(want), Ok(d));
        }
    }
}
