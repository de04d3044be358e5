//! Misuse of `#[job]` is a compile error that says what to change.

#[test]
fn job_macro_misuse_fails_to_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
