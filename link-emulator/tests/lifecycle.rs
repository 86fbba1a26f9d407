//! The link creates its namespaces, touches nothing else, and removes them on
//! drop, on panic, and after a crashed run.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;

use common::*;
use link_emulator::{Link, Side};

fn namespace_exists(name: &str) -> bool {
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let in_list = listed
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name));
    in_list || Path::new("/var/run/netns").join(name).exists()
}

#[test]
fn namespaces_exist_while_running_and_are_gone_after_drop() {
    let link = start(Link::builder());
    let names = [
        link.namespace(Side::A).to_owned(),
        link.namespace(Side::B).to_owned(),
    ];
    for (side, name) in [(Side::A, &names[0]), (Side::B, &names[1])] {
        assert!(
            name.starts_with(&format!("knafeh-link-{}-", std::process::id())),
            "{name}"
        );
        assert!(namespace_exists(name), "{name} missing while the link runs");
        let out = link
            .command(side, "ip")
            .args(["-4", "addr", "show", Link::TUN_DEVICE])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            shown.contains(&format!("{}/30", link.addr(side))),
            "{shown}"
        );
        assert!(
            shown.contains("mtu 1500") && shown.contains("UP"),
            "{shown}"
        );
    }
    let root = Command::new("ip")
        .args(["link", "show", Link::TUN_DEVICE])
        .output()
        .unwrap();
    assert!(
        !root.status.success(),
        "a TUN device appeared in the root namespace"
    );
    drop(link);
    for name in &names {
        assert!(!namespace_exists(name), "{name} left after drop");
    }
}

#[test]
fn namespaces_are_gone_after_a_panic() {
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let link = start(Link::builder());
        names
            .lock()
            .unwrap()
            .push(link.namespace(Side::A).to_owned());
        names
            .lock()
            .unwrap()
            .push(link.namespace(Side::B).to_owned());
        panic!("a test failing while the link runs");
    });
    assert!(result.is_err());
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 2);
    for name in &names {
        assert!(!namespace_exists(name), "{name} left after a panic");
    }
}

#[test]
fn leftovers_of_a_dead_process_are_removed_at_start() {
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let leftover = format!("knafeh-link-{dead}-0-a");
    let added = Command::new("ip")
        .args(["netns", "add", &leftover])
        .status()
        .unwrap();
    assert!(added.success(), "ip netns add {leftover}");
    let link = start(Link::builder());
    let gone = !namespace_exists(&leftover);
    let _ = Command::new("ip")
        .args(["netns", "delete", &leftover])
        .output();
    drop(link);
    assert!(gone, "{leftover} (pid {dead} is dead) was not removed");
}

#[test]
fn code_run_in_a_side_binds_in_its_namespace() {
    let link = start(Link::builder());
    let a = link.addr(Side::A);
    let bound = link
        .run_in(Side::A, move || UdpSocket::bind((a, 0)).map(|_| ()))
        .unwrap();
    assert!(
        bound.is_ok(),
        "cannot bind {a} inside namespace A: {bound:?}"
    );
    let in_b = link
        .run_in(Side::B, move || UdpSocket::bind((a, 0)).map(|_| ()))
        .unwrap();
    assert!(in_b.is_err(), "A's address is bindable in namespace B");
    assert!(
        UdpSocket::bind((a, 0)).is_err(),
        "A's address is bindable in the root namespace"
    );
}

#[test]
fn threads_started_inside_a_side_stay_in_its_namespace() {
    let link = start(Link::builder());
    let a = link.addr(Side::A);
    let bound = link
        .run_in(Side::A, move || {
            std::thread::spawn(move || UdpSocket::bind((a, 0)).map(|_| ()))
                .join()
                .unwrap()
        })
        .unwrap();
    assert!(
        bound.is_ok(),
        "a thread started in namespace A left it: {bound:?}"
    );
}

#[test]
fn a_bad_setting_is_refused_before_anything_is_created() {
    let e = Link::builder().loss(2.0).start().unwrap_err();
    assert_eq!(
        e.to_string(),
        "link emulator setting `a_to_b.loss`: 2 is not a probability in [0, 1]"
    );
}

/// Run as an unprivileged user, `start()` says that root is missing. The test
/// runs its own binary again under `setpriv` as nobody (uid 65534).
#[test]
fn not_being_root_is_reported_by_name() {
    if std::env::var_os("LINK_EMULATOR_PROBE").is_some() {
        match Link::builder().start() {
            Ok(_) => println!("PROBE: started"),
            Err(e) => println!("PROBE: {e}"),
        }
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe)
        .args([
            "--exact",
            "not_being_root_is_reported_by_name",
            "--nocapture",
        ])
        .env("LINK_EMULATOR_PROBE", "1")
        .output()
        .expect("run setpriv (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("PROBE: "));
    assert_eq!(
        line,
        Some(
            "PROBE: link emulator unavailable: not running as root (euid 65534); \
             network namespaces and TUN devices need root"
        ),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
