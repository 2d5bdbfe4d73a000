//! The public tensor methods, grouped by family. Each lowers to [`crate::Op`]s
//! through [`crate::Tensor::apply`].

mod elementwise;
mod index;
mod nn;
mod reduce;
mod view;
