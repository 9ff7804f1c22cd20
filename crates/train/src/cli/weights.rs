//! `brigade weights`: list the known pretrained weights, fetch one by name
//! into the weights cache (resumable, checksum-verified), and check a weights
//! file against an architecture.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use brigade_zoo::{
    find_known, known_weights, weights_cache_dir, Arch, HeadKind, KnownWeights, LoadOptions, Model,
};

/// Arguments of `brigade weights`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: WeightsCommand,
}

/// The `weights` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WeightsCommand {
    /// List the known weights names, their architectures and URLs
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Download weights by name into the cache (or --dest), resuming a
    /// partial download and verifying the published checksum
    Fetch {
        /// A name from `brigade weights list`
        name: String,
        /// Folder to put the file in (default: ${XDG_CACHE_HOME:-~/.cache}/brigade/weights)
        #[arg(long)]
        dest: Option<PathBuf>,
        /// Download from this URL instead (a mirror); the checksum is still verified
        #[arg(long)]
        url: Option<String>,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
    },
    /// Load a weights file (a path or a known name) into an architecture and
    /// report loaded / missing / unexpected / mis-shaped keys
    Check {
        /// A file path or a known weights name
        weights: String,
        /// The architecture (default: the known name's, else identified from
        /// the file's tensors)
        #[arg(long)]
        arch: Option<String>,
        /// Number of classes of the model (the head is re-initialised when it
        /// differs; default: the file's, else 1000)
        #[arg(long)]
        num_classes: Option<i64>,
        /// Print the report as one JSON object (every loaded, missing,
        /// unexpected, mis-shaped and renamed key)
        #[arg(long)]
        json: bool,
    },
}

/// Runs `brigade weights`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        WeightsCommand::List { json } => {
            print!("{}", list(json)?);
            Ok(())
        }
        WeightsCommand::Fetch {
            name,
            dest,
            url,
            quiet,
        } => {
            let Some(known) = find_known(&name) else {
                let names: Vec<&str> = known_weights().iter().map(|k| k.name).collect();
                bail!("unknown weights name {name:?}; known: {}", names.join(", "));
            };
            let dir = dest.unwrap_or_else(weights_cache_dir);
            let progress = if quiet {
                brigade_fetch::Progress::Hidden
            } else {
                brigade_fetch::Progress::Auto
            };
            let path = fetch(known, url.as_deref(), &dir, progress)?;
            println!("{}", path.display());
            Ok(())
        }
        WeightsCommand::Check {
            weights,
            arch,
            num_classes,
            json,
        } => {
            let path = brigade_zoo::resolve_weights(&weights)?;
            // Read once: identified (when needed) and loaded from memory.
            let sd = brigade_zoo::read_state_dict(&path)?;
            let mut file_classes = None;
            let arch: Arch = match (arch, find_known(&weights)) {
                (Some(a), _) => a.parse()?,
                (None, Some(k)) => k.arch,
                (None, None) => {
                    let id = identify(&path, &sd)?;
                    super::note(
                        json,
                        format!(
                            "{}: identified as {}{}",
                            path.display(),
                            id.arch,
                            id.num_classes
                                .map_or(String::from(" (no classifier)"), |n| format!(
                                    " with {n} classes"
                                ))
                        ),
                    );
                    file_classes = id.num_classes;
                    id.arch
                }
            };
            let num_classes = num_classes.or(file_classes).unwrap_or(1000);
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let model = Model::new(&vs.root(), arch, num_classes, HeadKind::Linear)?;
            let report = model
                .load_state_dict(&vs, sd, &path, LoadOptions { strict: false })
                .with_context(|| format!("loading {} into {arch}", path.display()))?;
            if json {
                let mismatched: Vec<serde_json::Value> = report
                    .mismatched
                    .iter()
                    .map(|(k, model, file)| serde_json::json!({"key": k, "model": model, "file": file}))
                    .collect();
                let renamed: Vec<serde_json::Value> = report
                    .renamed
                    .iter()
                    .map(|(from, to)| serde_json::json!({"file": from, "model": to}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "file": path.display().to_string(),
                        "arch": arch.name(),
                        "num_classes": num_classes,
                        "clean": report.is_clean(),
                        "loaded": report.loaded,
                        "missing": report.missing,
                        "unexpected": report.unexpected,
                        "mismatched": mismatched,
                        "head_replaced": report.head_replaced,
                        "renamed": renamed,
                        "skipped_num_batches_tracked": report.skipped_num_batches_tracked,
                    })
                );
            } else {
                println!("{}: {}", path.display(), report.summary());
            }
            if !report.is_clean() {
                bail!("{} does not fit {arch} exactly", path.display());
            }
            Ok(())
        }
    }
}

/// The `list` output (table or JSON).
pub fn list(json: bool) -> anyhow::Result<String> {
    let cache = weights_cache_dir();
    if json {
        let items: Vec<serde_json::Value> = known_weights()
            .iter()
            .map(|k| {
                let info = k.arch.info();
                serde_json::json!({
                    "name": k.name,
                    "arch": k.arch.name(),
                    "url": k.url,
                    "file_name": k.file_name,
                    "sha256_prefix": k.sha256_prefix,
                    "imagenet_top1": k.imagenet_top1,
                    "num_params": info.num_params,
                    "source": k.source,
                    "downloaded": cache.join(k.file_name).is_file(),
                })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&items)? + "\n");
    }
    let mut s = format!(
        "{:<24} {:<20} {:>7} {:>11}  {}\n",
        "NAME", "ARCH", "TOP-1", "PARAMS", "URL"
    );
    for k in known_weights() {
        let top1 = k
            .imagenet_top1
            .map(|t| format!("{t:.2}"))
            .unwrap_or_else(|| "-".into());
        let here = if cache.join(k.file_name).is_file() {
            " (downloaded)"
        } else {
            ""
        };
        s.push_str(&format!(
            "{:<24} {:<20} {:>7} {:>11}  {}{here}\n",
            k.name,
            k.arch.name(),
            top1,
            k.arch.info().num_params,
            k.url
        ));
    }
    s.push_str(&format!("cache: {}\n", cache.display()));
    Ok(s)
}

/// Downloads `known` (from `url_override` when given) into `dir`, verifying
/// the published sha256 prefix; an already complete file is verified and
/// reused, a `.part` file is resumed.
pub fn fetch(
    known: &KnownWeights,
    url_override: Option<&str>,
    dir: &Path,
    progress: brigade_fetch::Progress,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join(known.file_name);
    let expected = brigade_fetch::Expected {
        sha256_prefix: known.sha256_prefix.map(str::to_string),
        ..Default::default()
    };
    if known.sha256_prefix.is_none() {
        eprintln!(
            "warning: no checksum is published for {}; the file is not verified",
            known.name
        );
    }
    let url = url_override.unwrap_or(known.url);
    let path = brigade_fetch::download(url, &dest, &expected, progress)
        .with_context(|| format!("fetching weights {}", known.name))?;
    // Refuse a file that is not a weights file we can read (e.g. an HTML error page).
    brigade_zoo::weights::detect_format(&path)
        .with_context(|| format!("checking {}", path.display()))?;
    Ok(path)
}

/// The architecture and class count of the raw weights `sd` read from
/// `path`, from their tensors ([`brigade_zoo::identify_state_dict`]); an
/// error naming the file and the architectures tried when none fits.
pub fn identify(
    path: &std::path::Path,
    sd: &brigade_zoo::StateDict,
) -> anyhow::Result<brigade_zoo::Identified> {
    brigade_zoo::identify_state_dict(sd).with_context(|| {
        let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
        format!(
            "{}: its tensors fit none of the architectures ({}); pass --arch NAME to see \
             what does not fit",
            path.display(),
            names.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Serves `body` to every connection on a loopback port (HTTP/1.1, no Range).
    fn serve(body: Vec<u8>, hits: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(hits) {
                let mut s = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        format!("http://{addr}/w.safetensors")
    }

    fn tiny_safetensors(dir: &Path) -> Vec<u8> {
        let p = dir.join("src.safetensors");
        let t = tch::Tensor::arange(6, tch::kind::FLOAT_CPU).reshape([2, 3]);
        brigade_zoo::weights::write_safetensors(&p, &[("w".to_string(), t)], Default::default())
            .unwrap();
        std::fs::read(p).unwrap()
    }

    #[test]
    fn fetch_verifies_the_checksum_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let body = tiny_safetensors(dir.path());
        let src = dir.path().join("src.safetensors");
        let sha = brigade_zoo::sha256_file(&src).unwrap();
        let prefix: &'static str = Box::leak(sha[..8].to_string().into_boxed_str());
        let good = KnownWeights {
            sha256_prefix: Some(prefix),
            file_name: "good.safetensors",
            ..known_weights()[0]
        };
        let url = serve(body.clone(), 1);
        let out = dir.path().join("cache");
        let path = fetch(&good, Some(&url), &out, brigade_fetch::Progress::Hidden).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body);
        // A second fetch reuses the verified file without a server.
        let again = fetch(
            &good,
            Some("http://127.0.0.1:9/none"),
            &out,
            brigade_fetch::Progress::Hidden,
        )
        .unwrap();
        assert_eq!(again, path);

        let bad = KnownWeights {
            sha256_prefix: Some("00000000"),
            file_name: "bad.safetensors",
            ..good
        };
        let url = serve(body, 1);
        let err = fetch(&bad, Some(&url), &out, brigade_fetch::Progress::Hidden).unwrap_err();
        assert!(format!("{err:#}").contains("mismatch"), "{err:#}");
        assert!(!out.join("bad.safetensors").exists());
    }

    #[test]
    fn list_names_every_known_weight() {
        let table = list(false).unwrap();
        let json: serde_json::Value = serde_json::from_str(&list(true).unwrap()).unwrap();
        let items = json.as_array().unwrap();
        assert_eq!(items.len(), known_weights().len());
        for k in known_weights() {
            assert!(table.contains(k.url), "{}", k.name);
            assert!(items
                .iter()
                .any(|i| i["name"] == k.name && i["url"] == k.url));
            if let Some(p) = k.sha256_prefix {
                assert_eq!(
                    brigade_fetch::sha256_prefix_from_torchvision_name(k.file_name).as_deref(),
                    Some(p)
                );
            }
        }
    }
}
