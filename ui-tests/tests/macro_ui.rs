//! Compile-time behaviour of `#[goverse::object]`: what compiles, and the
//! exact messages for what does not (checked `.stderr` files).
//! Regenerate the expected output with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
