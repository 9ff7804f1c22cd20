//! The brigade trainer library: recipes ([`config`]), the training loop
//! ([`learner`]), checkpoints, metrics, plots, evaluation reports and the
//! command-line interface (the `brigade` binary is a thin shell over
//! [`cli::main`]).
//!
//! ```
//! use brigade_train::config::Config;
//!
//! let recipe = "[train]\nbatch_size = 32\n[[stage]]\nepochs = 2\nsize = 64\n";
//! let cfg = Config::from_toml_str(recipe, "inline", &["stage.0.lr=3e-3".into()])?;
//! assert_eq!(cfg.stage[0].lr, 3e-3);
//! assert_eq!(cfg.total_epochs(), 2);
//! // a misspelt key is an error naming it
//! let err = Config::from_toml_str(recipe, "inline", &["train.batch_sise=8".into()]).unwrap_err();
//! assert!(err.to_string().contains("train.batch_sise"));
//! # Ok::<(), brigade_train::config::ConfigError>(())
//! ```
pub mod accel;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod datasets;
pub mod learner;
pub mod loaded;
pub mod metrics;
pub mod model;
pub mod opt;
pub mod pipeline;
pub mod plot;
pub mod report;
