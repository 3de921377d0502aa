//! Compile-time checks of `#[function]`: what must compile, and what must fail with a helpful message.
//! Run with `TRYBUILD=overwrite` to regenerate the `.stderr` files after changing a message on purpose.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("../tests/ui/pass/*.rs");
    t.compile_fail("../tests/ui/fail/*.rs");
}
