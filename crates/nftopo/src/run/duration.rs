//! Durations written as Go's `time.ParseDuration` reads them (`1s`,
//! `500ms`, `1h0m0s`, `1.5h`), which is how kube-proxy's flags and its
//! configuration file (`metav1.Duration`) spell them.

use std::time::Duration;

/// Parses a Go duration: one or more decimal numbers each followed by a
/// unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), or a bare `0`. Negative
/// durations are refused (no sync period can be negative).
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 1s, 500ms, 1h0m0s)");
    let text = s.strip_prefix('+').unwrap_or(s);
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return Err(bad());
    }
    let mut rest = text;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ns += number * scale;
    }
    if !total_ns.is_finite() || total_ns > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

/// Formats like Go's `Duration.String` for whole milliseconds and above:
/// `1h0m0s`, `1s`, `500ms`, `0s`.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let frac = d.subsec_millis();
    let s = if frac == 0 {
        format!("{}s", secs % 60)
    } else {
        let frac = format!("{frac:03}");
        format!("{}.{}s", secs % 60, frac.trim_end_matches('0'))
    };
    match (secs / 3600, (secs / 60) % 60) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_kube_proxy_reads_them() {
        let ms = Duration::from_millis;
        let cases = [
            ("a bare zero is allowed", "0", Ok(Duration::ZERO)),
            ("seconds", "1s", Ok(ms(1000))),
            ("milliseconds", "500ms", Ok(ms(500))),
            ("Go's own printing of an hour", "1h0m0s", Ok(ms(3_600_000))),
            ("fractions", "1.5h", Ok(ms(5_400_000))),
            ("mixed units", "1m30s", Ok(ms(90_000))),
            ("microseconds", "1500us", Ok(Duration::from_micros(1500))),
            ("zero with a unit", "0s", Ok(Duration::ZERO)),
        ];
        for (name, text, want) in cases {
            assert_eq!(parse(text), want, "{name}");
        }
        for bad in ["", "1", "s", "-1s", "1d", "1 s", "1.2.3s"] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ] {
            assert_eq!(format(d), want);
            assert_eq!(parse(want), Ok(d), "{want} round-trips");
        }
    }
}
