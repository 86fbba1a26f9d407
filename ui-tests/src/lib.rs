//! Compile tests of `#[knafeh::service]` live in `tests/`; this crate has
//! no code of its own.
