//! The `grpc-timeout` header: up to 8 ASCII digits followed by a unit
//! (`H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds,
//! `n` nanoseconds).

use std::fmt;
use std::time::Duration;

/// Largest value that fits in the 8 digits allowed by the header.
const MAX_DIGITS_VALUE: u128 = 99_999_999;

/// Units from finest to coarsest, with their length in nanoseconds.
const UNITS: [(char, u128); 6] = [
    ('n', 1),
    ('u', 1_000),
    ('m', 1_000_000),
    ('S', 1_000_000_000),
    ('M', 60_000_000_000),
    ('H', 3_600_000_000_000),
];

/// Encodes a timeout in the finest unit whose value fits in 8 digits,
/// rounding up so the result is never shorter than `d`. Durations beyond
/// the largest encodable value become `"99999999H"`.
pub(crate) fn encode_timeout(d: Duration) -> String {
    let nanos = d.as_nanos();
    for (unit, unit_nanos) in UNITS {
        let value = nanos.div_ceil(unit_nanos);
        if value <= MAX_DIGITS_VALUE {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX_DIGITS_VALUE}H")
}

/// A `grpc-timeout` header value that is not 1 to 8 digits and a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeoutError {
    value: String,
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid grpc-timeout value {}: expected 1 to 8 ASCII digits followed by one \
             unit of H, M, S, m, u or n (e.g. \"100m\")",
            crate::proto::text::quoted(self.value.as_bytes())
        )
    }
}

impl std::error::Error for TimeoutError {}

/// Parses a `grpc-timeout` header value strictly: 1 to 8 ASCII digits then
/// exactly one unit character, nothing else.
pub(crate) fn parse_timeout(v: &[u8]) -> Result<Duration, TimeoutError> {
    let err = || TimeoutError {
        value: String::from_utf8_lossy(v).into_owned(),
    };
    let Some((&unit, digits)) = v.split_last() else {
        return Err(err());
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(err());
    }
    let value = digits
        .iter()
        .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(value * 3600),
        b'M' => Duration::from_secs(value * 60),
        b'S' => Duration::from_secs(value),
        b'm' => Duration::from_millis(value),
        b'u' => Duration::from_micros(value),
        b'n' => Duration::from_nanos(value),
        _ => return Err(err()),
    })
}

/// The `grpc-timeout` codec for the fuzz targets (built only with
/// `--cfg fuzzing`); errors are their `Display` text.
#[cfg(fuzzing)]
pub mod fuzz {
    use std::time::Duration;

    /// See the crate-private `encode_timeout`.
    pub fn encode_timeout(d: Duration) -> String {
        super::encode_timeout(d)
    }

    /// See the crate-private `parse_timeout`.
    pub fn parse_timeout(v: &[u8]) -> Result<Duration, String> {
        super::parse_timeout(v).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_each_unit() {
        assert_eq!(encode_timeout(Duration::ZERO), "0n");
        assert_eq!(encode_timeout(Duration::from_nanos(1)), "1n");
        assert_eq!(
            encode_timeout(Duration::from_nanos(99_999_999)),
            "99999999n"
        );
        assert_eq!(encode_timeout(Duration::from_nanos(100_000_000)), "100000u");
        assert_eq!(encode_timeout(Duration::from_secs(1)), "1000000u");
        assert_eq!(
            encode_timeout(Duration::from_micros(99_999_999)),
            "99999999u"
        );
        assert_eq!(encode_timeout(Duration::from_secs(100)), "100000m");
        assert_eq!(
            encode_timeout(Duration::from_millis(99_999_999)),
            "99999999m"
        );
        assert_eq!(encode_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(encode_timeout(Duration::from_secs(99_999_999)), "99999999S");
        assert_eq!(encode_timeout(Duration::from_secs(100_000_000)), "1666667M");
        assert_eq!(
            encode_timeout(Duration::from_secs(99_999_999 * 60)),
            "99999999M"
        );
        assert_eq!(
            encode_timeout(Duration::from_secs(99_999_999 * 60 + 1)),
            "1666667H"
        );
        assert_eq!(
            encode_timeout(Duration::from_secs(99_999_999 * 3600)),
            "99999999H"
        );
        assert_eq!(
            encode_timeout(Duration::from_secs(99_999_999 * 3600 + 1)),
            "99999999H"
        );
        assert_eq!(encode_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn encode_rounds_up() {
        // 100 ms + 1 ns does not fit in nanoseconds; 100000.001 us -> 100001u.
        assert_eq!(encode_timeout(Duration::from_nanos(100_000_001)), "100001u");
        // 100 s + 1 ns -> 100000.000001 ms -> 100001m.
        assert_eq!(
            encode_timeout(Duration::from_secs(100) + Duration::from_nanos(1)),
            "100001m"
        );
        for d in [
            Duration::from_nanos(123_456_789_123),
            Duration::from_millis(123_456_789),
            Duration::from_secs(7_777_777_777),
            Duration::new(100_000_000, 1),
        ] {
            let back = parse_timeout(encode_timeout(d).as_bytes()).unwrap();
            assert!(back >= d, "{d:?} -> {back:?}");
        }
    }

    #[test]
    fn parse_each_unit() {
        assert_eq!(parse_timeout(b"0n"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout(b"7n"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_timeout(b"7u"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_timeout(b"7m"), Ok(Duration::from_millis(7)));
        assert_eq!(parse_timeout(b"7S"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_timeout(b"7M"), Ok(Duration::from_secs(420)));
        assert_eq!(parse_timeout(b"7H"), Ok(Duration::from_secs(25_200)));
        assert_eq!(parse_timeout(b"00000010S"), Ok(Duration::from_secs(10)));
        assert_eq!(
            parse_timeout(b"99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn round_trips() {
        for s in ["0n", "1n", "99999999n", "5u", "250m", "30S", "2M", "24H"] {
            let d = parse_timeout(s.as_bytes()).unwrap();
            let back = parse_timeout(encode_timeout(d).as_bytes()).unwrap();
            assert_eq!(back, d, "{s}");
        }
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(1500),
            Duration::from_secs(3600),
        ] {
            assert_eq!(parse_timeout(encode_timeout(d).as_bytes()), Ok(d));
        }
    }

    #[test]
    fn parse_errors() {
        for bad in [
            &b""[..],
            b"S",
            b"1",
            b"12",
            b"123456789S",
            b"-1S",
            b"+1S",
            b" 1S",
            b"1S ",
            b"1 S",
            b"1s",
            b"1h",
            b"1x",
            b"1SS",
            b"1.5S",
            b"\xff",
            b"1\xff",
        ] {
            let err = parse_timeout(bad).unwrap_err();
            assert_eq!(err.value, String::from_utf8_lossy(bad), "{bad:?}");
        }
        // Found by fuzz/fuzz_targets/grpc_timeout.rs: the whole value was
        // quoted, so the refusal's grpc-message grew with the header.
        let long = [b'\x01'; 300];
        let err = parse_timeout(&long).unwrap_err();
        assert_eq!(err.value, String::from_utf8_lossy(&long));
        assert!(err.to_string().contains("... (300 bytes)"), "{err}");
        assert!(err.to_string().len() < 600, "{err}");
        assert_eq!(
            parse_timeout(b"9x").unwrap_err().to_string(),
            "invalid grpc-timeout value \"9x\": expected 1 to 8 ASCII digits followed by \
             one unit of H, M, S, m, u or n (e.g. \"100m\")"
        );
    }
}
