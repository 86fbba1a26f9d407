//! How a command fails: a gRPC code (the exit status) and a message
//! (printed on stderr as `CODE_NAME: message`).

use std::fmt;

use knafeh::{Code, Status};

/// A failed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The exit status is its number.
    pub(crate) code: Code,
    /// What went wrong, and where.
    pub(crate) message: String,
}

impl Failure {
    /// A failure with this code and message.
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// `INVALID_ARGUMENT`: the request is wrong; nothing was sent.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(Code::InvalidArgument, message)
    }

    /// `INTERNAL`: the server answered something that makes no sense.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Failure::new(Code::Internal, message)
    }

    /// `UNIMPLEMENTED` (the server does not serve what was asked) with
    /// `hint` added to the message; any other failure as it is.
    pub(crate) fn when_unimplemented(self, hint: &str) -> Self {
        if self.code != Code::Unimplemented {
            return self;
        }
        Failure::new(Code::Unimplemented, format!("{} ({hint})", self.message))
    }

    /// The process exit status: the code's number.
    pub(crate) fn exit_status(&self) -> i32 {
        self.code.as_i32()
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Failure::new(status.code(), status.message())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}
