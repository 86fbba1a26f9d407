//! The HTTP/3 error codes knafeh sends and reads (RFC 9114 §8.1).

/// An orderly close; also how a server that answered before reading the
/// whole request stops reading it (RFC 9114 §4.1).
pub(crate) const H3_NO_ERROR: u64 = 0x100;
/// The connection was closed because the peer went silent.
pub(crate) const H3_INTERNAL_ERROR: u64 = 0x102;
/// A request refused before any processing (a draining server).
pub(crate) const H3_REQUEST_REJECTED: u64 = 0x10b;
/// A cancelled request (deadline passed, caller gone).
pub(crate) const H3_REQUEST_CANCELLED: u64 = 0x10c;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_rfc_9114s() {
        assert_eq!(
            [
                H3_NO_ERROR,
                H3_INTERNAL_ERROR,
                H3_REQUEST_REJECTED,
                H3_REQUEST_CANCELLED
            ],
            [0x100, 0x102, 0x10b, 0x10c]
        );
    }
}
