//! `brigade launch --nproc N -- train ...`: runs N local ranks of a brigade
//! subcommand with torchrun's variables (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
//! `MASTER_ADDR`, `MASTER_PORT`), one process per GPU; `train` then trains
//! data-parallel (sharded sampler, averaged gradients, rank 0 writes files).

use anyhow::Context;

/// Arguments of `brigade launch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Processes (ranks) to start
    #[arg(long, default_value = "1")]
    pub nproc: usize,
    /// MASTER_PORT (default: a free port)
    #[arg(long)]
    pub master_port: Option<u16>,
    /// The brigade subcommand and its arguments, after `--`
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `brigade launch`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the brigade executable")?;
    let mut opts = brigade_torch_ext::LaunchOptions::new(args.nproc);
    opts.master_port = args.master_port;
    brigade_torch_ext::launch(&exe, &args.command, &opts)?;
    Ok(())
}
