//! Code the example programs share (included with `#[path]`, not an example itself).
#![allow(dead_code)] // each example uses a different part

pub mod args;
pub mod deploy;
pub mod plot;
pub mod train;
