//! The protocol core does no I/O and reads no clock: its files (outside
//! their `#[cfg(test)]` modules) name no runtime, no transport, no sockets
//! and no clock.

const FORBIDDEN: &[&str] = &[
    "tokio",
    "quiche",
    "std::net",
    "Instant::now",
    "SystemTime::now",
    "std::fs",
    "std::thread",
];

#[test]
fn the_core_does_no_io_and_reads_no_clock() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "purity.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Tests may use the clock to make instants.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                assert!(
                    !line.contains(word),
                    "{}:{}: the protocol core must not use `{word}`",
                    path.display(),
                    i + 1
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} files under {}", dir.display());
}
