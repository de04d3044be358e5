//! Misuse of `#[job]` is a compile error that says what to change.

#[test]
fn job_macro_misuse_fails_to_compile() {
    // scripts/test.sh compiles the workspace through clippy-driver with `-D warnings`;
    // trybuild's project must compile as plain rustc does, or clippy's findings in the
    // misuse cases would change the expected messages.
    std::env::remove_var("RUSTC_WORKSPACE_WRAPPER");
    std::env::remove_var("CLIPPY_ARGS");
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
