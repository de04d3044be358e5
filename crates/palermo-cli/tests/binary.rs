//! The `palermo` binary starts and names its version. The end-to-end tests (tests/suite,
//! tests/admin) run it against the broker; this file also makes `cargo test` build it
//! (target/debug/palermo) with the tests' features, which scripts/test.sh hands them as
//! `PALERMO_BIN`.

use std::process::Command;

#[test]
fn the_binary_names_its_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_palermo"))
        .arg("--version")
        .output()
        .expect("run palermo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout.trim(),
        concat!("palermo ", env!("CARGO_PKG_VERSION"))
    );
}
