//! The `grpc-timeout` header (knafeh/src/timeout.rs).
//!
//! - Parsing arbitrary bytes accepts exactly 1 to 8 ASCII digits followed by
//!   one of `HMSmun`, and gives the value times the unit; errors quote
//!   short values and stay under 1 KiB.
//! - Every parsed value encodes to a header that parses back to it exactly.
//! - Any duration (from the first 12 bytes) encodes to at most 9 bytes that
//!   parse back to a duration no shorter, by less than one unit, in the
//!   finest unit that fits; durations beyond `99999999H` clamp to it.
#![no_main]

use std::time::Duration;

use knafeh::__fuzz::timeout::{encode_timeout, parse_timeout};
use libfuzzer_sys::fuzz_target;

const MAX_VALUE: u128 = 99_999_999;

fn unit_nanos(unit: u8) -> Option<u128> {
    Some(match unit {
        b'n' => 1,
        b'u' => 1_000,
        b'm' => 1_000_000,
        b'S' => 1_000_000_000,
        b'M' => 60_000_000_000,
        b'H' => 3_600_000_000_000,
        _ => return None,
    })
}

/// The grammar, independently: value in nanoseconds if `v` is well formed.
fn expected(v: &[u8]) -> Option<u128> {
    let (&unit, digits) = v.split_last()?;
    if !(1..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u128 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(value * unit_nanos(unit)?)
}

fn check_encoding(d: Duration) {
    let enc = encode_timeout(d);
    assert!((2..=9).contains(&enc.len()), "{d:?} -> {enc:?}");
    let back = parse_timeout(enc.as_bytes())
        .unwrap_or_else(|e| panic!("{d:?} encodes to {enc:?}, which does not parse: {e}"));
    let unit = unit_nanos(*enc.as_bytes().last().unwrap()).unwrap();
    let max = MAX_VALUE * 3_600_000_000_000;
    if d.as_nanos() > max {
        assert_eq!(back.as_nanos(), max, "{d:?} -> {enc:?}");
        return;
    }
    assert!(back >= d, "{d:?} -> {enc:?} -> {back:?} is shorter");
    assert!(
        back.as_nanos() - d.as_nanos() < unit,
        "{d:?} -> {enc:?}: rounded up by a whole unit or more"
    );
    // The finest unit that fits was chosen.
    for finer in [1u128, 1_000, 1_000_000, 1_000_000_000, 60_000_000_000] {
        if finer < unit {
            assert!(
                d.as_nanos().div_ceil(finer) > MAX_VALUE,
                "{d:?} -> {enc:?}: a finer unit ({finer} ns) fits"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_timeout(data);
    match (expected(data), &parsed) {
        (Some(nanos), Ok(d)) => {
            assert_eq!(d.as_nanos(), nanos, "{:?}", String::from_utf8_lossy(data));
            let enc = encode_timeout(*d);
            assert_eq!(parse_timeout(enc.as_bytes()).as_ref(), Ok(d), "{enc:?}");
        }
        (None, Err(e)) => {
            // The error (sent back in a status message) names the value but
            // stays small.
            assert!(e.len() <= 1024, "{} byte error", e.len());
            // Quoted whole up to 64 bytes (of the value with invalid UTF-8
            // replaced, which is what the error keeps).
            let lossy = String::from_utf8_lossy(data);
            if lossy.len() <= 64 {
                let shown = format!("{lossy:?}");
                assert!(e.contains(&shown), "error {e:?} does not quote the value");
            }
        }
        (want, got) => panic!(
            "{:?}: expected {want:?} ns, parse_timeout gave {got:?}",
            String::from_utf8_lossy(data)
        ),
    }
    if let Some(bytes) = data.get(..12) {
        let secs = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let nanos = u32::from_le_bytes(bytes[8..].try_into().unwrap()) % 1_000_000_000;
        check_encoding(Duration::new(secs, nanos));
        // Small durations too, where the fine units matter.
        check_encoding(Duration::from_nanos(secs % 1_000_000_000_000));
    }
});
