//! gRPC status codes and the [`Status`] error type, plus the
//! `grpc-message` percent-encoding.

use std::fmt;

use crate::proto::metadata::Metadata;

/// A gRPC status code, as carried in the `grpc-status` trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The call completed successfully.
    Ok = 0,
    /// The call was cancelled, typically by the caller.
    Cancelled = 1,
    /// An unknown error, e.g. an error from another address space or an unrecognised status.
    Unknown = 2,
    /// The client supplied an invalid argument, regardless of the server's state.
    InvalidArgument = 3,
    /// The deadline expired before the call could complete.
    DeadlineExceeded = 4,
    /// A requested entity was not found.
    NotFound = 5,
    /// The entity the client tried to create already exists.
    AlreadyExists = 6,
    /// The caller is not permitted to perform the operation.
    PermissionDenied = 7,
    /// A resource (quota, memory, message size, ...) has been exhausted.
    ResourceExhausted = 8,
    /// The system is not in the state required for the operation.
    FailedPrecondition = 9,
    /// The operation was aborted, typically by a concurrency conflict.
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or not supported by the server.
    Unimplemented = 12,
    /// An internal invariant was broken; a serious server-side error.
    Internal = 13,
    /// The service is currently unavailable; the call may be retried.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request lacks valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// All 17 codes, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// Converts a numeric code; numbers outside `0..=16` become [`Code::Unknown`].
    pub fn from_i32(v: i32) -> Code {
        usize::try_from(v)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// Returns the numeric value of the code.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// Returns the canonical upper-case name of the code, e.g. `"NOT_FOUND"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// Parses a `grpc-status` header value: ASCII decimal digits only (no
    /// sign, no spaces). A well-formed number outside `0..=16` gives
    /// `Some(Code::Unknown)`; anything that is not a number gives `None`.
    pub fn from_header(v: &[u8]) -> Option<Code> {
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut n: u32 = 0;
        for &b in v {
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u32::from(b - b'0')))
            {
                Some(n) => n,
                // Too big for any known code.
                None => return Some(Code::Unknown),
            };
        }
        Some(i32::try_from(n).map_or(Code::Unknown, Code::from_i32))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a failed call: a code, a human-readable message and
/// optional custom metadata (sent as trailers).
#[derive(Clone, Debug)]
pub struct Status {
    code: Code,
    message: String,
    metadata: Metadata,
}

macro_rules! status_constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Status {
                Status::new(Code::$code, message)
            }
        )*
    };
}

impl Status {
    /// The OK status, with no message: how a successful call ends.
    pub fn ok() -> Status {
        Status::new(Code::Ok, "")
    }

    /// Creates a status with the given code and message and no metadata.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            metadata: Metadata::new(),
        }
    }

    status_constructors! {
        /// Creates a [`Code::Cancelled`] status.
        cancelled => Cancelled;
        /// Creates a [`Code::Unknown`] status.
        unknown => Unknown;
        /// Creates a [`Code::InvalidArgument`] status.
        invalid_argument => InvalidArgument;
        /// Creates a [`Code::DeadlineExceeded`] status.
        deadline_exceeded => DeadlineExceeded;
        /// Creates a [`Code::NotFound`] status.
        not_found => NotFound;
        /// Creates a [`Code::AlreadyExists`] status.
        already_exists => AlreadyExists;
        /// Creates a [`Code::PermissionDenied`] status.
        permission_denied => PermissionDenied;
        /// Creates a [`Code::ResourceExhausted`] status.
        resource_exhausted => ResourceExhausted;
        /// Creates a [`Code::FailedPrecondition`] status.
        failed_precondition => FailedPrecondition;
        /// Creates a [`Code::Aborted`] status.
        aborted => Aborted;
        /// Creates a [`Code::OutOfRange`] status.
        out_of_range => OutOfRange;
        /// Creates a [`Code::Unimplemented`] status.
        unimplemented => Unimplemented;
        /// Creates a [`Code::Internal`] status.
        internal => Internal;
        /// Creates a [`Code::Unavailable`] status.
        unavailable => Unavailable;
        /// Creates a [`Code::DataLoss`] status.
        data_loss => DataLoss;
        /// Creates a [`Code::Unauthenticated`] status.
        unauthenticated => Unauthenticated;
    }

    /// Returns the status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// Returns the (decoded) status message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns the custom metadata attached to this status.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Returns the custom metadata attached to this status, mutably.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// Replaces the custom metadata, builder style.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.code.as_str())
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_numbers_and_names() {
        for (i, c) in Code::ALL.iter().enumerate() {
            assert_eq!(c.as_i32(), i as i32);
            assert_eq!(Code::from_i32(i as i32), *c);
        }
        assert_eq!(Code::Ok.as_str(), "OK");
        assert_eq!(Code::InvalidArgument.as_str(), "INVALID_ARGUMENT");
        assert_eq!(Code::Unauthenticated.as_str(), "UNAUTHENTICATED");
        assert_eq!(Code::DataLoss.to_string(), "DATA_LOSS");
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::from_i32(i32::MAX), Code::Unknown);
        assert_eq!(Code::from_i32(i32::MIN), Code::Unknown);
    }

    #[test]
    fn code_from_header() {
        assert_eq!(Code::from_header(b"0"), Some(Code::Ok));
        assert_eq!(Code::from_header(b"5"), Some(Code::NotFound));
        assert_eq!(Code::from_header(b"16"), Some(Code::Unauthenticated));
        assert_eq!(Code::from_header(b"016"), Some(Code::Unauthenticated));
        assert_eq!(Code::from_header(b"17"), Some(Code::Unknown));
        assert_eq!(Code::from_header(b"2147483648"), Some(Code::Unknown));
        assert_eq!(
            Code::from_header(b"99999999999999999999999"),
            Some(Code::Unknown)
        );
        assert_eq!(Code::from_header(b""), None);
        assert_eq!(Code::from_header(b"-1"), None);
        assert_eq!(Code::from_header(b"+1"), None);
        assert_eq!(Code::from_header(b" 1"), None);
        assert_eq!(Code::from_header(b"1 "), None);
        assert_eq!(Code::from_header(b"1a"), None);
        assert_eq!(Code::from_header(b"\xff"), None);
    }

    #[test]
    fn status_basics() {
        let s = Status::not_found("no such user");
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "no such user");
        assert_eq!(s.to_string(), "NOT_FOUND: no such user");
        assert!(s.metadata().is_empty());
        assert_eq!(Status::internal("").to_string(), "INTERNAL");
        assert_eq!(Status::cancelled("x").code(), Code::Cancelled);
        assert_eq!(Status::unknown("x").code(), Code::Unknown);
        assert_eq!(Status::invalid_argument("x").code(), Code::InvalidArgument);
        assert_eq!(
            Status::deadline_exceeded("x").code(),
            Code::DeadlineExceeded
        );
        assert_eq!(Status::already_exists("x").code(), Code::AlreadyExists);
        assert_eq!(
            Status::permission_denied("x").code(),
            Code::PermissionDenied
        );
        assert_eq!(
            Status::resource_exhausted("x").code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            Status::failed_precondition("x").code(),
            Code::FailedPrecondition
        );
        assert_eq!(Status::aborted("x").code(), Code::Aborted);
        assert_eq!(Status::out_of_range("x").code(), Code::OutOfRange);
        assert_eq!(Status::unimplemented("x").code(), Code::Unimplemented);
        assert_eq!(Status::unavailable("x").code(), Code::Unavailable);
        assert_eq!(Status::data_loss("x").code(), Code::DataLoss);
        assert_eq!(Status::unauthenticated("x").code(), Code::Unauthenticated);
        let e: Box<dyn std::error::Error> = Box::new(Status::aborted("a"));
        assert_eq!(e.to_string(), "ABORTED: a");
    }

    #[test]
    fn status_metadata() {
        let mut md = Metadata::new();
        md.insert("retry-after", "5").unwrap();
        let mut s = Status::unavailable("busy").with_metadata(md);
        assert_eq!(s.metadata().get("retry-after"), Some("5"));
        s.metadata_mut().append("x", "y").unwrap();
        assert_eq!(s.metadata().len(), 2);
    }
}
