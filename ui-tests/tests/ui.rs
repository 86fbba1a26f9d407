//! What `#[knafeh::service]` accepts, and the errors it gives for what it
//! rejects. The `.stderr` files are produced by
//! `TRYBUILD=overwrite cargo test -p knafeh-ui-tests`, never by hand.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/fail/*.rs");
}
