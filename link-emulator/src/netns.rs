//! Network namespaces and TUN devices, through `ip` and a few system calls.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use crate::Error;

/// Where `ip netns` keeps its named namespaces.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";
/// Prefix of every namespace this crate creates: `knafeh-link-<pid>-<n>-<a|b>`.
pub(crate) const PREFIX: &str = "knafeh-link-";
/// The TUN device's name inside each namespace.
pub(crate) const TUN_NAME: &str = "kn0";

/// Checks that the process is root, `ip` runs and `/dev/net/tun` exists.
pub(crate) fn check_prerequisites(ip_program: &str) -> Result<(), Error> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(Error::NotRoot { euid });
    }
    Command::new(ip_program)
        .arg("-V")
        .output()
        .map_err(Error::IpMissing)?;
    std::fs::metadata("/dev/net/tun").map_err(|e| Error::tun("/dev/net/tun", e))?;
    Ok(())
}

/// Runs `ip ARGS`, turning a failure into an error carrying its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<(), Error> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(Error::IpMissing)?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Ip {
        command: format!("ip {}", args.join(" ")),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Opens the named namespace's handle (for `setns`).
pub(crate) fn open_namespace(name: &str) -> Result<File, Error> {
    let path = Path::new(NETNS_DIR).join(name);
    File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))
}

/// Moves the calling thread into the namespace behind `handle`.
pub(crate) fn enter(handle: &File, name: &str) -> Result<(), Error> {
    // SAFETY: setns takes a valid open descriptor, which `handle` owns.
    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::io(
            format!("setns into network namespace {name}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates the TUN device [`TUN_NAME`] inside namespace `name` (from a helper
/// thread that enters it) and returns its non-blocking descriptor. IPv6 is
/// switched off in the namespace first, so the link carries only the tests'
/// own IPv4 traffic.
pub(crate) fn create_tun(name: &str) -> Result<OwnedFd, Error> {
    let handle = open_namespace(name)?;
    let name = name.to_owned();
    std::thread::Builder::new()
        .name("link-emulator-tun".into())
        .spawn(move || {
            enter(&handle, &name)?;
            for conf in ["all", "default"] {
                // Absent when the kernel has no IPv6: nothing to switch off.
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
            }
            open_tun()
        })
        .map_err(|e| Error::io("spawn a thread to create the TUN device", e))?
        .join()
        .unwrap_or_else(|_| Err(Error::io("TUN thread", io::Error::other("panicked"))))
}

/// Opens `/dev/net/tun` and attaches it to a new IFF_TUN | IFF_NO_PI device.
fn open_tun() -> Result<OwnedFd, Error> {
    let path = c"/dev/net/tun";
    // SAFETY: a valid NUL-terminated path and plain flags.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(Error::tun("open /dev/net/tun", io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..TUN_NAME.len()].copy_from_slice(TUN_NAME.as_bytes());
    // SAFETY: TUNSETIFF reads a `struct ifreq`, which `req` lays out.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(Error::tun(
            format!("ioctl TUNSETIFF {TUN_NAME}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(fd)
}

/// Deletes namespaces left by a process of this crate that is gone (a run
/// that crashed or was killed before its `Link` was dropped).
pub(crate) fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            match ip(&["netns", "delete", &name]) {
                Ok(()) => tracing::info!(namespace = %name, pid, "removed leftover namespace"),
                Err(e) => tracing::warn!(namespace = %name, error = %e, "leftover namespace"),
            }
        }
    }
}

/// The pid in a namespace name `knafeh-link-<pid>-<n>-<side>`.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("knafeh-link-1234-0-a"), Some(1234));
        assert_eq!(owner_pid("knafeh-link-x-0-a"), None);
        assert_eq!(owner_pid("other-1234-0-a"), None);
    }

    #[test]
    fn missing_ip_program_is_named() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(matches!(
                check_prerequisites("ip"),
                Err(Error::NotRoot { .. })
            ));
            return;
        }
        let e = check_prerequisites("/nonexistent/ip").unwrap_err();
        assert!(matches!(e, Error::IpMissing(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("the `ip` program (iproute2) cannot be run"),
            "{e}"
        );
    }
}
