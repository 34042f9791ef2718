//! The command tree (clap) and its dispatch; rendering lives in `render`.

pub mod args;
pub mod cluster;
mod lab;
pub mod render;
pub mod run;
mod schedule;

pub use args::Cli;
pub use run::{run, CliError};
