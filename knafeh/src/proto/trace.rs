//! W3C Trace Context: the `traceparent` metadata entry, parsed and
//! formatted (<https://www.w3.org/TR/trace-context/>, version `00`).
//!
//! `traceparent` is `{version}-{trace-id}-{parent-id}-{trace-flags}` in
//! lower-case hex: 2, 32, 16 and 2 digits, e.g.
//! `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`. A trace id or
//! parent id of all zeros is invalid, and so is version `ff`. A later
//! version is read for its version-`00` fields (the spec's forward
//! compatibility rule); knafeh always sends version `00`.

use std::fmt;

/// The metadata key of the trace parent.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The metadata key of the vendor trace state that goes with it.
pub(crate) const TRACESTATE: &str = "tracestate";

/// The length of a version-`00` `traceparent`.
const LEN: usize = 55;

/// A parsed W3C `traceparent`: which trace a call belongs to, and the span
/// (on the caller's side) it is a child of.
///
/// ```
/// let tp: knafeh::TraceParent =
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
/// assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(tp.sampled());
/// assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` value was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParentError {
    reason: &'static str,
}

impl TraceParentError {
    /// What is wrong with the value.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid traceparent: {}", self.reason)
    }
}

impl std::error::Error for TraceParentError {}

fn invalid(reason: &'static str) -> TraceParentError {
    TraceParentError { reason }
}

impl TraceParent {
    /// A trace parent from its parts; all-zero ids are refused.
    ///
    /// # Errors
    /// When `trace_id` or `parent_id` is all zeros.
    pub fn new(
        trace_id: [u8; 16],
        parent_id: [u8; 8],
        flags: u8,
    ) -> Result<Self, TraceParentError> {
        if trace_id == [0; 16] {
            return Err(invalid("trace-id is all zeros"));
        }
        if parent_id == [0; 8] {
            return Err(invalid("parent-id is all zeros"));
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Parses a `traceparent` header value.
    ///
    /// # Errors
    /// A value that is not a `traceparent` of version `00` (or a later
    /// version, read for its version-`00` fields), with the reason.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let b = value.as_bytes();
        if b.len() < 2 {
            return Err(invalid("shorter than a version"));
        }
        let version = hex::<1>(&b[..2]).ok_or(invalid("version is not 2 lower-case hex digits"))?;
        match version[0] {
            0xff => return Err(invalid("version ff is invalid")),
            0x00 if b.len() != LEN => return Err(invalid("version 00 is 55 characters long")),
            _ if b.len() < LEN => return Err(invalid("shorter than 55 characters")),
            _ if b.len() > LEN && b[LEN] != b'-' => {
                return Err(invalid("a later version's extra fields must follow a '-'"))
            }
            _ => {}
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(invalid("fields are not separated by '-'"));
        }
        let trace_id =
            hex::<16>(&b[3..35]).ok_or(invalid("trace-id is not 32 lower-case hex digits"))?;
        let parent_id =
            hex::<8>(&b[36..52]).ok_or(invalid("parent-id is not 16 lower-case hex digits"))?;
        let flags =
            hex::<1>(&b[53..55]).ok_or(invalid("trace-flags is not 2 lower-case hex digits"))?;
        TraceParent::new(trace_id, parent_id, flags[0])
    }

    /// The trace id, 16 bytes.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace id as 32 lower-case hex digits (as in logs and tracing
    /// back ends).
    pub fn trace_id_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        push_hex(&mut s, &self.trace_id);
        s
    }

    /// The caller's span id, 8 bytes.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags byte.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller recorded (sampled) its span: flag bit `0x01`.
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 != 0
    }

    /// The same trace and flags, with `span_id` as the parent: what a call
    /// made for this one sends.
    ///
    /// # Errors
    /// When `span_id` is all zeros.
    pub fn with_parent_id(&self, span_id: [u8; 8]) -> Result<Self, TraceParentError> {
        TraceParent::new(self.trace_id, span_id, self.flags)
    }
}

impl std::str::FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceParent::parse(s)
    }
}

/// The version-`00` header value.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(LEN);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.parent_id);
        s.push('-');
        push_hex(&mut s, &[self.flags]);
        f.write_str(&s)
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

/// `N` bytes from `2 * N` lower-case hex digits (upper case is invalid in
/// `traceparent`).
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_spec_example_parses_byte_for_byte_and_formats_back() {
        let tp = TraceParent::parse(GOOD).unwrap();
        assert_eq!(
            tp.trace_id(),
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(
            tp.parent_id(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(tp.flags(), 0x01);
        assert!(tp.sampled());
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.to_string(), GOOD);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceParent::parse(unsampled).unwrap().sampled());
    }

    #[test]
    fn every_byte_of_the_format_is_checked() {
        let cases: &[(&str, &str)] = &[
            ("", "shorter than a version"),
            ("0", "shorter than a version"),
            // Upper-case hex is not the format.
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace-id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                "parent-id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G",
                "trace-flags",
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            // Wrong lengths: one digit short or long in each field.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "55 characters",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
                "55 characters",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
                "55 characters",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "55 characters",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "55 characters",
            ),
            // Right length, separators moved or replaced.
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "separated",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                "separated",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
                "separated",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
                "separated",
            ),
            // All-zero ids.
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace-id is all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent-id is all zeros",
            ),
            // A later version: extra fields only after a '-'.
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                "follow a '-'",
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                "shorter than 55",
            ),
        ];
        for (value, reason) in cases {
            let err = TraceParent::parse(value).unwrap_err();
            assert!(err.reason().contains(reason), "{value:?}: {err}");
            assert!(err.to_string().starts_with("invalid traceparent: "));
        }
    }

    #[test]
    fn a_later_version_is_read_for_its_version_00_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let tp = TraceParent::parse(later).unwrap();
        assert_eq!(tp, TraceParent::parse(GOOD).unwrap());
        assert_eq!(tp.to_string(), GOOD, "knafeh sends version 00");
        let exact = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceParent::parse(exact).unwrap().to_string(), GOOD);
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_and_never_has_a_zero_id() {
        let tp = TraceParent::parse(GOOD).unwrap();
        let child = tp.with_parent_id([1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        assert!(tp.with_parent_id([0; 8]).is_err());
        assert!(TraceParent::new([0; 16], [1; 8], 0).is_err());
        let built = TraceParent::new([0xab; 16], [0xff; 8], 0x03).unwrap();
        assert_eq!(
            built.to_string(),
            "00-abababababababababababababababab-ffffffffffffffff-03"
        );
        assert_eq!(TraceParent::parse(&built.to_string()), Ok(built));
    }
}
