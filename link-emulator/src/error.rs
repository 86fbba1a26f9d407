//! The one error type of the crate.

use std::fmt;
use std::io;

/// Why a [`Link`](crate::Link) could not be started or used.
///
/// Each variant names what is missing or what failed, so a test that cannot
/// run says exactly why (for example "not running as root").
#[derive(Debug)]
pub enum Error {
    /// The process is not root (effective uid 0), which creating network
    /// namespaces and TUN devices needs.
    NotRoot {
        /// The effective uid of the process.
        euid: u32,
    },
    /// The `ip` program (iproute2) could not be run.
    IpMissing(io::Error),
    /// `/dev/net/tun` is missing or cannot be opened, or the kernel refused to
    /// create a TUN device.
    Tun {
        /// What was being done ("open /dev/net/tun", "ioctl TUNSETIFF", ...).
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// An `ip` command ran but failed (for example `ip netns add` without
    /// network namespace support).
    Ip {
        /// The command line, starting with `ip`.
        command: String,
        /// What the command printed on standard error.
        stderr: String,
    },
    /// Another system call failed (opening a namespace, `setns`, creating a
    /// thread, ...).
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A setting is out of range.
    Config {
        /// The setting, e.g. `a_to_b.loss`.
        field: String,
        /// Why the value is refused.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn tun(context: impl Into<String>, source: io::Error) -> Self {
        Error::Tun {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotRoot { euid } => write!(
                f,
                "link emulator unavailable: not running as root (euid {euid}); \
                 network namespaces and TUN devices need root"
            ),
            Error::IpMissing(e) => write!(
                f,
                "link emulator unavailable: the `ip` program (iproute2) cannot be run: {e}"
            ),
            Error::Tun { context, source } => write!(
                f,
                "link emulator unavailable: TUN device: {context}: {source}"
            ),
            Error::Ip { command, stderr } => {
                write!(f, "link emulator: `{command}` failed: {}", stderr.trim())
            }
            Error::Io { context, source } => write!(f, "link emulator: {context}: {source}"),
            Error::Config { field, reason } => {
                write!(f, "link emulator setting `{field}`: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::IpMissing(e) => Some(e),
            Error::Tun { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
