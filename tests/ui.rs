//! Compile-time checks of `#[function]`: what must compile, and what must fail with a helpful message.
//! Run with `TRYBUILD=overwrite` to regenerate the `.stderr` files after changing a message on purpose.
//!
//! `async fn` handlers exist only with the SDK's `wasip3` feature, so two sets depend on it: `wasip3-*` run when it is
//! on (as in `cargo test --workspace`, where examples turn it on), `wasip2-fail` when it is off (`cargo test -p
//! edgefn --test ui`, which `tests/run.sh` also runs).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("../tests/ui/pass/*.rs");
    t.compile_fail("../tests/ui/fail/*.rs");
    if cfg!(feature = "wasip3") {
        t.pass("../tests/ui/wasip3-pass/*.rs");
        t.compile_fail("../tests/ui/wasip3-fail/*.rs");
    } else {
        t.compile_fail("../tests/ui/wasip2-fail/*.rs");
    }
}
