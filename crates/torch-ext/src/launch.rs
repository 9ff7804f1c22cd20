//! Spawning N local ranks with torchrun's environment (`brigade launch`).

use std::ffi::OsStr;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Options of [`launch`].
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Number of local processes (ranks `0..nprocs`).
    pub nprocs: usize,
    /// `MASTER_ADDR` given to the ranks.
    pub master_addr: String,
    /// `MASTER_PORT`; `None` picks a free port.
    pub master_port: Option<u16>,
    /// Kill every rank when they have not all finished by then.
    pub timeout: Option<Duration>,
    /// Extra environment variables for every rank.
    pub env: Vec<(String, String)>,
}

impl LaunchOptions {
    /// `nprocs` ranks on 127.0.0.1, a free port, no timeout.
    pub fn new(nprocs: usize) -> Self {
        LaunchOptions {
            nprocs,
            master_addr: "127.0.0.1".into(),
            master_port: None,
            timeout: None,
            env: Vec::new(),
        }
    }
}

/// A TCP port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(|source| Error::Io {
        what: "binding 127.0.0.1:0 to find a free port".into(),
        source,
    })?;
    let port = l
        .local_addr()
        .map_err(|source| Error::Io {
            what: "reading the bound port".into(),
            source,
        })?
        .port();
    Ok(port)
}

/// Runs `program args` as `nprocs` local ranks with `RANK`, `LOCAL_RANK`,
/// `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` set, and
/// waits for all. When one rank fails or the timeout passes, the others are
/// killed and the error names the culprit. Output is inherited.
pub fn launch<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: &[S],
    opts: &LaunchOptions,
) -> Result<()> {
    if opts.nprocs == 0 {
        return Err(Error::Invalid("launch needs at least one process".into()));
    }
    let name = program.as_ref().to_string_lossy().into_owned();
    let port = match opts.master_port {
        Some(p) => p,
        None => free_port()?,
    };
    let start = Instant::now();
    let mut children: Vec<Option<Child>> = Vec::with_capacity(opts.nprocs);
    for rank in 0..opts.nprocs {
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", opts.nprocs.to_string())
            .env("LOCAL_WORLD_SIZE", opts.nprocs.to_string())
            .env("MASTER_ADDR", &opts.master_addr)
            .env("MASTER_PORT", port.to_string());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        match cmd.spawn() {
            Ok(c) => children.push(Some(c)),
            Err(source) => {
                kill_all(&mut children);
                return Err(Error::Io {
                    what: format!("spawning rank {rank} of {name}"),
                    source,
                });
            }
        }
    }
    loop {
        for rank in 0..children.len() {
            let Some(child) = children[rank].as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    children[rank] = None;
                    if !status.success() {
                        kill_all(&mut children);
                        return Err(Error::RankFailed {
                            rank,
                            program: name,
                            status,
                        });
                    }
                }
                Ok(None) => {}
                Err(source) => {
                    kill_all(&mut children);
                    return Err(Error::Io {
                        what: format!("waiting for rank {rank} of {name}"),
                        source,
                    });
                }
            }
        }
        if children.iter().all(Option::is_none) {
            return Ok(());
        }
        if let Some(t) = opts.timeout {
            if start.elapsed() > t {
                let unfinished = children
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.is_some())
                    .map(|(r, _)| r)
                    .collect();
                kill_all(&mut children);
                return Err(Error::Timeout {
                    program: name,
                    secs: t.as_secs_f64(),
                    unfinished,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_all(children: &mut [Option<Child>]) {
    for c in children.iter_mut().flatten() {
        // Best effort: the child may have exited in between (then kill fails harmlessly).
        let _ = c.kill();
        let _ = c.wait();
    }
}
