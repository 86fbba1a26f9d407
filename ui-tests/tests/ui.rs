//! The errors `#[knafeh::service]` and `#[pyservice]` give for what they
//! reject. The `.stderr` files are produced by
//! `TRYBUILD=overwrite cargo test -p knafeh-ui-tests`, never by hand.
//!
//! What they accept is in `pass/`: each file is a test program of its own
//! (`[[test]]` targets in Cargo.toml), so it is built with the workspace's
//! dependencies and trybuild only has to `cargo check` the cases here.

use std::path::{Path, PathBuf};

#[test]
fn ui() {
    reuse_boringssl();
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/fail/*.rs");
}

/// trybuild builds the cases in a target directory of its own, where
/// BoringSSL would be compiled again (minutes on a cold run). When the
/// workspace's build already has it, point boring-sys there instead (its
/// documented `BORING_BSSL_PATH`/`BORING_BSSL_INCLUDE_PATH`); otherwise
/// trybuild's build compiles it as usual.
fn reuse_boringssl() {
    if std::env::var_os("BORING_BSSL_PATH").is_some() {
        return;
    }
    let Some(out) = built_boringssl() else {
        return;
    };
    std::env::set_var("BORING_BSSL_PATH", out.join("build"));
    std::env::set_var("BORING_BSSL_INCLUDE_PATH", out.join("boringssl/include"));
}

/// The first (by name, so the choice is stable from run to run)
/// `boring-sys` build output of this profile that holds both libraries
/// and the headers.
fn built_boringssl() -> Option<PathBuf> {
    // target/<profile>/deps/ui-<hash>
    let exe = std::env::current_exe().ok()?;
    let build = exe.parent()?.parent()?.join("build");
    let complete = |out: &Path| {
        [
            "build/libcrypto.a",
            "build/libssl.a",
            "boringssl/include/openssl/ssl.h",
        ]
        .iter()
        .all(|f| out.join(f).is_file())
    };
    let mut outs: Vec<PathBuf> = std::fs::read_dir(build)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("boring-sys-"))
        .map(|e| e.path().join("out"))
        .filter(|out| complete(out))
        .collect();
    outs.sort();
    outs.into_iter().next()
}
