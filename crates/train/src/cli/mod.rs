//! `brigade` subcommands, one module each. Every module exposes a clap `Args`
//! struct and `run(args) -> anyhow::Result<()>`, so each subcommand is a
//! library function that tests can call directly.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod bench_loader;
pub mod bench_train;
pub mod demo;
pub mod eval;
pub mod fetch;
pub mod index;
pub mod launch;
pub mod lr_find;
pub mod pack;
pub mod predict;
pub mod synth;
pub mod train;
pub mod weights;

/// Train image classifiers fast.
#[derive(Debug, Parser)]
#[command(name = "brigade", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download and unpack a dataset (Food-101), verify it, and index it
    Fetch(fetch::Args),
    /// Generate a deterministic synthetic dataset in the Food-101 layout
    Synth(synth::Args),
    /// Detect a dataset's layout, list its splits and every problem found
    Index(index::Args),
    /// Decode, resize and pack a dataset into one memory-mapped store
    Pack(pack::Args),
    /// Measure loader-only throughput
    BenchLoader(bench_loader::Args),
    /// Pretrained weight files: fetch by name
    Weights(weights::Args),
    /// Train a classifier from a TOML recipe
    Train(train::Args),
    /// Evaluate a checkpoint on the test split
    Eval(eval::Args),
    /// Predict the top-5 classes of images
    Predict(predict::Args),
    /// Sweep learning rates and suggest one
    LrFind(lr_find::Args),
    /// The whole pipeline on a synthetic dataset, on CPU, in minutes
    Demo(demo::Args),
    /// Training steps/s of the brigade loop vs a plain PyTorch eager loop
    BenchTrain(bench_train::Args),
    /// Run N local ranks of a subcommand (data-parallel training): launch --nproc 2 -- train ...
    Launch(launch::Args),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Fetch(a) => fetch::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Index(a) => index::run(a),
        Command::Pack(a) => pack::run(a),
        Command::BenchLoader(a) => bench_loader::run(a),
        Command::Weights(a) => weights::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::LrFind(a) => lr_find::run(a),
        Command::Demo(a) => demo::run(a),
        Command::BenchTrain(a) => bench_train::run(a),
        Command::Launch(a) => launch::run(a),
    }
}

/// Entry point of the `brigade` binary: parse, run, print errors with their
/// causes, map to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// A progress or informational line: on stdout, or on stderr when stdout
/// carries a `--json` result.
pub(crate) fn note(json: bool, line: impl std::fmt::Display) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// An error and its causes on one line, `outer: cause: cause`, leaving out a
/// cause whose text the line already holds (library errors often print their
/// source in their own message too).
pub fn error_text(err: &anyhow::Error) -> String {
    // libtorch errors carry a C++ backtrace after the message: not for users.
    let clean = |e: &dyn std::error::Error| {
        let t = e.to_string();
        match t.find("\nException raised from") {
            Some(i) => t[..i].trim_end().to_string(),
            None => t,
        }
    };
    let mut text = clean(err.as_ref());
    for cause in err.chain().skip(1) {
        let c = clean(cause);
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn causes_print_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        // a library error that prints its source and also chains it
        #[derive(Debug, thiserror::Error)]
        #[error("/data/x: {source}")]
        struct Lib {
            source: std::io::Error,
        }
        let err = anyhow::Error::new(Lib { source: io }).context("indexing /data");
        assert_eq!(error_text(&err), "indexing /data: /data/x: No such file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
        let torch = anyhow::anyhow!(
            "Target 3 is out of bounds.\nException raised from nll_loss at x.cpp:255:\nframe #0: ..."
        )
        .context("training step");
        assert_eq!(
            error_text(&torch),
            "training step: Target 3 is out of bounds."
        );
    }
}
