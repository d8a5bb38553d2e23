//! placeholder
pub mod command;
