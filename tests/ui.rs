//! Compile-time behaviour of `#[aggregate]` and `#[event]`: what compiles,
//! and the message each mistake produces (`tests/ui/fail/*.stderr`).
//!
//! Refresh the expected messages with `TRYBUILD=overwrite cargo test --test ui`
//! and read every changed `.stderr`: it is what a user sees.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
