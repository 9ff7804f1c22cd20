//! HTTP download with resume, progress, checksum verification and atomic
//! completion.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::FetchError;

/// What a downloaded (or hand-placed) file must match. Empty fields are not
/// checked. Hex digests are compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Full SHA-256, 64 hex digits.
    pub sha256: Option<String>,
    /// Leading hex digits of the SHA-256 (torchvision weight names carry one;
    /// see [`sha256_prefix_from_torchvision_name`]).
    pub sha256_prefix: Option<String>,
    /// MD5, 32 hex digits.
    pub md5: Option<String>,
    /// Length in bytes.
    pub size: Option<u64>,
}

impl Expected {
    fn validate(&self) -> Result<(), FetchError> {
        let hex = |name: &str, v: &Option<String>, len: Option<usize>| {
            if let Some(v) = v {
                let ok_len = match len {
                    Some(l) => v.len() == l,
                    None => !v.is_empty() && v.len() <= 64,
                };
                if !ok_len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(FetchError::BadExpectation(format!(
                        "{name} {v:?} is not a hex digest of the right length"
                    )));
                }
            }
            Ok(())
        };
        hex("sha256", &self.sha256, Some(64))?;
        hex("sha256 prefix", &self.sha256_prefix, None)?;
        hex("md5", &self.md5, Some(32))
    }
}

/// Whether to draw a progress bar on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A bar (bytes, rate, ETA) when stderr is a terminal, nothing otherwise.
    #[default]
    Auto,
    /// Never draw.
    Hidden,
}

/// Knobs of [`download_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// Connection attempts (each resumes where the last stopped).
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    /// Longest silence while reading before an attempt is abandoned.
    pub read_timeout: Duration,
    /// Pause before a retry (multiplied by the attempt number).
    pub retry_delay: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            max_attempts: 5,
            connect_timeout: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// Digests of a file, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub sha256: String,
    pub md5: String,
    pub size: u64,
}

/// Hashes a file (SHA-256 and MD5 in one pass).
pub fn digest_file(path: &Path) -> Result<Digests, FetchError> {
    let f = File::open(path).map_err(|e| FetchError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FetchError::io(path, e)),
        };
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digests {
        sha256: hex::encode(sha.finalize()),
        md5: hex::encode(md5.finalize()),
        size,
    })
}

/// Checks a file against `expected`; `removed` is appended to a mismatch
/// message (say whether the file was deleted).
fn check(path: &Path, expected: &Expected, removed: &'static str) -> Result<Digests, FetchError> {
    expected.validate()?;
    let d = digest_file(path)?;
    if let Some(size) = expected.size {
        if size != d.size {
            return Err(FetchError::Size {
                path: path.to_path_buf(),
                expected: size,
                got: d.size,
            });
        }
    }
    let mismatch = |algorithm, expected: &str, got: &str| FetchError::Checksum {
        path: path.to_path_buf(),
        algorithm,
        expected: expected.to_string(),
        got: got.to_string(),
        removed,
    };
    if let Some(e) = &expected.sha256 {
        if !e.eq_ignore_ascii_case(&d.sha256) {
            return Err(mismatch("sha256", e, &d.sha256));
        }
    }
    if let Some(e) = &expected.sha256_prefix {
        if !d.sha256.starts_with(&e.to_ascii_lowercase()) {
            return Err(mismatch("sha256 prefix", e, &d.sha256));
        }
    }
    if let Some(e) = &expected.md5 {
        if !e.eq_ignore_ascii_case(&d.md5) {
            return Err(mismatch("md5", e, &d.md5));
        }
    }
    Ok(d)
}

/// Verifies an existing file (e.g. an archive given with `--archive`)
/// against `expected`. Never deletes it.
pub fn verify_file(path: &Path, expected: &Expected) -> Result<Digests, FetchError> {
    check(path, expected, "")
}

/// The SHA-256 prefix torchvision puts in weight file names
/// (`resnet50-11ad3fa6.pth` → `11ad3fa6`), found the way `torch.hub` does:
/// the first `-<hex digits>.` in the file name.
pub fn sha256_prefix_from_torchvision_name(name: &str) -> Option<String> {
    let file = name.rsplit('/').next().unwrap_or(name);
    let bytes = file.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'-' {
            continue;
        }
        let hex: Vec<u8> = bytes[i + 1..]
            .iter()
            .copied()
            .take_while(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            .collect();
        if !hex.is_empty() && bytes.get(i + 1 + hex.len()) == Some(&b'.') {
            return String::from_utf8(hex).ok();
        }
    }
    None
}

/// `dest` with `.part` appended.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_os_string();
    s.push(".part");
    PathBuf::from(s)
}

/// Downloads `url` to `dest` with default [`DownloadOptions`]. See
/// [`download_with`].
pub fn download(
    url: &str,
    dest: &Path,
    expected: &Expected,
    progress: Progress,
) -> Result<PathBuf, FetchError> {
    download_with(url, dest, expected, progress, &DownloadOptions::default())
}

fn offline_advice(url: &str, dest: &Path) -> String {
    format!(
        "brigade could not connect to the server: this machine may be offline or behind a \
         firewall. Download {url} by other means (a browser, another machine), then either \
         place the file at {} (a partial download at {} is resumed) or pass its location with \
         `--archive PATH`. The file is verified against the expected checksum either way.",
        dest.display(),
        part_path(dest).display()
    )
}

enum Attempt {
    Done,
    Retry(String),
}

/// Downloads `url` to `dest`:
///
/// * an existing `dest` is verified and returned (a mismatch is an error; it
///   is not deleted);
/// * bytes go to `dest.part`; an existing `.part` is resumed with an HTTP
///   `Range` request (a server answering 200 instead of 206 restarts it);
/// * a cut-off transfer is resumed, up to `max_attempts` connections;
/// * the finished `.part` is checked against `expected` (a mismatch deletes
///   it and names expected vs got), fsynced and only then renamed to `dest`.
///
/// When the server cannot be reached the error is [`FetchError::Offline`],
/// whose text says where to place the file by hand.
pub fn download_with(
    url: &str,
    dest: &Path,
    expected: &Expected,
    progress: Progress,
    opts: &DownloadOptions,
) -> Result<PathBuf, FetchError> {
    expected.validate()?;
    if dest.is_file() {
        verify_file(dest, expected)?;
        return Ok(dest.to_path_buf());
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| FetchError::io(parent, e))?;
    }
    let part = part_path(dest);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(opts.connect_timeout)
        .timeout_read(opts.read_timeout)
        .build();
    let bar = make_bar(progress);
    let mut last = String::from("no attempt made");
    let mut done = false;
    for n in 0..opts.max_attempts.max(1) {
        if n > 0 {
            std::thread::sleep(opts.retry_delay * n);
        }
        match attempt(&agent, url, dest, &part, expected, &bar)? {
            Attempt::Done => {
                done = true;
                break;
            }
            Attempt::Retry(why) => last = why,
        }
    }
    bar.finish_and_clear();
    if !done {
        return Err(FetchError::TooManyAttempts {
            url: url.to_string(),
            attempts: opts.max_attempts.max(1),
            part,
            last,
        });
    }
    if let Err(e) = check(&part, expected, " (the partial download was deleted)") {
        if matches!(e, FetchError::Checksum { .. } | FetchError::Size { .. }) {
            let _ = fs::remove_file(&part);
        }
        return Err(e);
    }
    File::open(&part)
        .and_then(|f| f.sync_all())
        .map_err(|e| FetchError::io(&part, e))?;
    fs::rename(&part, dest).map_err(|e| FetchError::io(dest, e))?;
    Ok(dest.to_path_buf())
}

fn make_bar(progress: Progress) -> indicatif::ProgressBar {
    if progress == Progress::Hidden || !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Start offset from a `Content-Range: bytes START-END/TOTAL` header, with the total.
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn attempt(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    part: &Path,
    expected: &Expected,
    bar: &indicatif::ProgressBar,
) -> Result<Attempt, FetchError> {
    let mut offset = match fs::metadata(part) {
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    if let Some(size) = expected.size {
        if offset == size {
            return Ok(Attempt::Done);
        }
        if offset > size {
            fs::remove_file(part).map_err(|e| FetchError::io(part, e))?;
            offset = 0;
        }
    }
    let mut req = agent.get(url);
    if offset > 0 {
        req = req.set("Range", &format!("bytes={offset}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(416, _)) if offset > 0 => {
            // Range not satisfiable: the part is (probably) complete; the
            // checksum decides.
            return Ok(Attempt::Done);
        }
        Err(ureq::Error::Status(code, _)) if code >= 500 => {
            return Ok(Attempt::Retry(format!("HTTP status {code}")));
        }
        Err(ureq::Error::Status(status, _)) => {
            return Err(FetchError::Http {
                url: url.to_string(),
                status,
            })
        }
        Err(ureq::Error::Transport(t)) => {
            return match t.kind() {
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                    Err(FetchError::Offline {
                        url: url.to_string(),
                        cause: t.to_string(),
                        advice: offline_advice(url, dest),
                    })
                }
                ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                    Err(FetchError::Transfer {
                        url: url.to_string(),
                        message: t.to_string(),
                    })
                }
                _ => Ok(Attempt::Retry(t.to_string())),
            };
        }
    };
    let content_len: Option<u64> = resp
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok());
    let (mut file, start, total) = if resp.status() == 206 && offset > 0 {
        let range = resp.header("Content-Range").and_then(parse_content_range);
        match range {
            Some((start, total)) if start == offset => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(part)
                    .map_err(|e| FetchError::io(part, e))?;
                (f, offset, total.or(content_len.map(|l| l + offset)))
            }
            _ => {
                // A range we did not ask for: start over.
                fs::remove_file(part).map_err(|e| FetchError::io(part, e))?;
                return Ok(Attempt::Retry(format!(
                    "server answered range {:?} to a request from byte {offset}",
                    resp.header("Content-Range")
                )));
            }
        }
    } else {
        // 200 (also to a Range request: the server ignores ranges): restart.
        let f = File::create(part).map_err(|e| FetchError::io(part, e))?;
        (f, 0, content_len)
    };
    if let (Some(t), Some(size)) = (total, expected.size) {
        if t != size {
            let _ = fs::remove_file(part);
            return Err(FetchError::Size {
                path: dest.to_path_buf(),
                expected: size,
                got: t,
            });
        }
    }
    bar.set_length(total.unwrap_or(0));
    bar.set_position(start);
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = start;
    let outcome = loop {
        match reader.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                file.write_all(&buf[..n])
                    .map_err(|e| FetchError::io(part, e))?;
                pos += n as u64;
                bar.set_position(pos);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e.to_string()),
        }
    };
    file.flush().map_err(|e| FetchError::io(part, e))?;
    if let Some(err) = outcome {
        return Ok(Attempt::Retry(format!(
            "transfer cut off at byte {pos}: {err}"
        )));
    }
    if let Some(t) = total {
        if pos < t {
            return Ok(Attempt::Retry(format!(
                "transfer cut off at byte {pos} of {t}"
            )));
        }
    }
    Ok(Attempt::Done)
}
