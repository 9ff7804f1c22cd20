//! Download and extraction against a loopback HTTP server inside the test.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brigade_fetch::{
    download_with, extract_tar_gz, is_complete, part_path, sha256_prefix_from_torchvision_name,
    verify_file, DownloadOptions, Expected, ExtractOptions, FetchError, Progress,
};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy)]
enum Mode {
    /// Honours `Range: bytes=N-`.
    Ranges,
    /// Always answers 200 with the whole body.
    NoRanges,
    /// The first response claims the whole length but stops after `n` bytes;
    /// later ones honour ranges.
    CutFirstAt(usize),
}

struct Server {
    url: String,
    /// The `Range` header of every request (None when absent).
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

/// Serves `body` at any path for at most `max_conns` connections.
fn serve(body: Vec<u8>, mode: Mode, max_conns: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/data.bin", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let log = ranges.clone();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().take(max_conns).enumerate() {
            let Ok(stream) = stream else { continue };
            let _ = handle(stream, &body, mode, i, &log);
        }
    });
    Server { url, ranges }
}

fn handle(
    mut stream: TcpStream,
    body: &[u8],
    mode: Mode,
    conn: usize,
    log: &Mutex<Vec<Option<String>>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push(range.clone());
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let honour = match mode {
        Mode::NoRanges => false,
        Mode::Ranges => true,
        Mode::CutFirstAt(_) => conn > 0,
    };
    match start {
        Some(s) if honour && s >= body.len() => {
            write!(stream, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        }
        Some(s) if honour => {
            let part = &body[s..];
            write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nConnection: close\r\n\r\n",
                part.len(),
                s,
                body.len() - 1,
                body.len()
            )?;
            stream.write_all(part)?;
        }
        _ => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            match mode {
                Mode::CutFirstAt(n) if conn == 0 => stream.write_all(&body[..n])?,
                _ => stream.write_all(body)?,
            }
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn md5(b: &[u8]) -> String {
    use md5::Md5;
    hex::encode(Md5::digest(b))
}

fn opts() -> DownloadOptions {
    DownloadOptions {
        max_attempts: 4,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        retry_delay: Duration::from_millis(10),
    }
}

#[test]
fn cut_off_transfer_resumes_with_range() {
    let data = body(300_000);
    let server = serve(data.clone(), Mode::CutFirstAt(100_000), 4);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("sub/data.bin");
    let expected = Expected {
        sha256: Some(sha256(&data)),
        md5: Some(md5(&data)),
        size: Some(data.len() as u64),
        ..Default::default()
    };
    let got = download_with(&server.url, &dest, &expected, Progress::Hidden, &opts()).unwrap();
    assert_eq!(got, dest);
    assert_eq!(fs::read(&dest).unwrap(), data);
    assert!(!part_path(&dest).exists());
    let ranges = server.ranges.lock().unwrap().clone();
    assert_eq!(ranges, [None, Some("bytes=100000-".to_string())]);
    // A second call finds the verified file and does not connect.
    download_with(&server.url, &dest, &expected, Progress::Hidden, &opts()).unwrap();
    assert_eq!(server.ranges.lock().unwrap().len(), 2);
}

#[test]
fn existing_part_is_resumed() {
    let data = body(50_000);
    let server = serve(data.clone(), Mode::Ranges, 2);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data.bin");
    fs::write(part_path(&dest), &data[..12_345]).unwrap();
    let expected = Expected {
        sha256: Some(sha256(&data)),
        ..Default::default()
    };
    download_with(&server.url, &dest, &expected, Progress::Hidden, &opts()).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    assert_eq!(
        *server.ranges.lock().unwrap(),
        [Some("bytes=12345-".to_string())]
    );
}

#[test]
fn server_without_ranges_restarts_from_zero() {
    let data = body(40_000);
    let server = serve(data.clone(), Mode::NoRanges, 2);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data.bin");
    // Garbage in the part: appending to it would fail the checksum.
    fs::write(part_path(&dest), vec![0xAB; 777]).unwrap();
    let expected = Expected {
        sha256: Some(sha256(&data)),
        ..Default::default()
    };
    download_with(&server.url, &dest, &expected, Progress::Hidden, &opts()).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    assert_eq!(
        *server.ranges.lock().unwrap(),
        [Some("bytes=777-".to_string())]
    );
}

#[test]
fn wrong_checksum_deletes_the_part_and_names_both_digests() {
    let data = body(10_000);
    let server = serve(data.clone(), Mode::Ranges, 2);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data.bin");
    let wrong = sha256(b"something else");
    let expected = Expected {
        sha256: Some(wrong.clone()),
        ..Default::default()
    };
    let err = download_with(&server.url, &dest, &expected, Progress::Hidden, &opts()).unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Checksum {
                algorithm: "sha256",
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong) && msg.contains(&sha256(&data)),
        "{msg}"
    );
    assert!(!dest.exists() && !part_path(&dest).exists());

    let server = serve(data.clone(), Mode::Ranges, 2);
    let expected = Expected {
        md5: Some(md5(b"other")),
        ..Default::default()
    };
    let err = download_with(&server.url, &dest, &expected, Progress::Hidden, &opts()).unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Checksum {
                algorithm: "md5",
                ..
            }
        ),
        "{err}"
    );
    assert!(!dest.exists() && !part_path(&dest).exists());

    let server = serve(data.clone(), Mode::Ranges, 2);
    let expected = Expected {
        size: Some(9_999),
        ..Default::default()
    };
    let err = download_with(&server.url, &dest, &expected, Progress::Hidden, &opts()).unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Size {
                expected: 9_999,
                got: 10_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(!dest.exists() && !part_path(&dest).exists());
}

#[test]
fn torchvision_sha256_prefix() {
    assert_eq!(
        sha256_prefix_from_torchvision_name("resnet50-11ad3fa6.pth").as_deref(),
        Some("11ad3fa6")
    );
    assert_eq!(
        sha256_prefix_from_torchvision_name(
            "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth"
        )
        .as_deref(),
        Some("7f5810bc")
    );
    assert_eq!(sha256_prefix_from_torchvision_name("resnet50.pth"), None);
    assert_eq!(sha256_prefix_from_torchvision_name("res-net-zz.pth"), None);

    let data = body(5_000);
    let digest = sha256(&data);
    let dir = tempfile::tempdir().unwrap();
    let name = format!("tiny-{}.pth", &digest[..8]);
    let server = serve(data.clone(), Mode::Ranges, 2);
    let prefix = sha256_prefix_from_torchvision_name(&name);
    let dest = dir.path().join(&name);
    let expected = Expected {
        sha256_prefix: prefix,
        ..Default::default()
    };
    download_with(&server.url, &dest, &expected, Progress::Hidden, &opts()).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    let bad = Expected {
        sha256_prefix: Some("00000000".into()),
        ..Default::default()
    };
    assert!(matches!(
        verify_file(&dest, &bad),
        Err(FetchError::Checksum { .. })
    ));
    assert!(dest.exists(), "verify_file never deletes");
}

#[test]
fn connection_refused_is_an_offline_error_with_advice() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("food-101.tar.gz");
    let url = format!("http://127.0.0.1:{port}/food-101.tar.gz");
    let err =
        download_with(&url, &dest, &Expected::default(), Progress::Hidden, &opts()).unwrap_err();
    assert!(matches!(err, FetchError::Offline { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("--archive PATH"), "{msg}");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    assert!(msg.contains(&url), "{msg}");
}

// ---------------------------------------------------------------- extraction

enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str),
}

/// Writes a tar.gz with raw entry names (no validation by the builder).
fn tarball(path: &Path, entries: &[E]) {
    let gz =
        flate2::write::GzEncoder::new(fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match e {
            E::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                (n, d)
            }
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                (n, &[])
            }
            E::Symlink(n, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(t).unwrap();
                (n, &[])
            }
            E::Hardlink(n, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_link_name(t).unwrap();
                (n, &[])
            }
            E::Char(n) => {
                h.set_entry_type(tar::EntryType::Char);
                (n, &[])
            }
        };
        let slot = &mut h.as_gnu_mut().unwrap().name;
        slot.fill(0);
        slot[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn extracts_a_good_archive_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.gz");
    tarball(
        &archive,
        &[
            E::Dir("top/"),
            E::File("top/meta/classes.txt", b"a\nb\n"),
            E::File("./top/images/a/1.jpg", b"jpeg"),
            E::Symlink("top/images/a/link.jpg", "1.jpg"),
            E::Symlink("top/up", "images/a/../a"),
            E::Hardlink("top/images/a/hard.jpg", "top/images/a/1.jpg"),
        ],
    );
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let dest = out.join("data");
    extract_tar_gz(
        &archive,
        &dest,
        &ExtractOptions {
            strip_components: 1,
        },
    )
    .unwrap();
    assert!(is_complete(&dest));
    assert_eq!(fs::read(dest.join("meta/classes.txt")).unwrap(), b"a\nb\n");
    assert_eq!(fs::read(dest.join("images/a/link.jpg")).unwrap(), b"jpeg");
    assert_eq!(fs::read(dest.join("images/a/hard.jpg")).unwrap(), b"jpeg");
    assert_eq!(
        leftovers(&out),
        std::slice::from_ref(&dest),
        "no .partial folder left"
    );
    // Idempotent: a complete destination is returned as is.
    extract_tar_gz(
        &archive,
        &dest,
        &ExtractOptions {
            strip_components: 1,
        },
    )
    .unwrap();
    // A destination without the marker is not taken as complete.
    fs::remove_file(dest.join(".complete")).unwrap();
    let err = extract_tar_gz(&archive, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, FetchError::Incomplete { .. }), "{err}");
}

#[test]
fn malicious_archives_are_refused() {
    let cases: Vec<(&str, Vec<E>)> = vec![
        (
            "absolute path",
            vec![E::File("/tmp/brigade-evil-abs", b"x")],
        ),
        ("`..`", vec![E::File("top/../../evil.txt", b"x")]),
        ("escaping symlink", vec![E::Symlink("top/link", "../../..")]),
        ("absolute symlink", vec![E::Symlink("top/link", "/etc")]),
        (
            "write through symlink",
            vec![
                E::Symlink("top/inner", "."),
                E::File("top/inner/x.txt", b"x"),
            ],
        ),
        (
            "symlink chain",
            vec![
                E::Symlink("top/a/b", ".."),
                E::Symlink("top/c", "a/b/../.."),
            ],
        ),
        (
            "hard link outside",
            vec![E::Hardlink("top/h", "../../../etc/passwd")],
        ),
        ("device file", vec![E::Char("top/dev")]),
    ];
    for (what, entries) in cases {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.tar.gz");
        let mut all = vec![E::File("top/ok.txt", b"fine")];
        all.extend(entries);
        tarball(&archive, &all);
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let dest = out.join("data");
        let err = extract_tar_gz(&archive, &dest, &ExtractOptions::default()).unwrap_err();
        assert!(
            matches!(err, FetchError::UnsafeEntry { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().contains("evil.tar.gz"), "{what}: {err}");
        assert!(
            leftovers(&out).is_empty(),
            "{what}: nothing may land in the destination"
        );
        assert!(!dir.path().join("evil.txt").exists(), "{what}");
        let names: Vec<_> = leftovers(dir.path());
        assert_eq!(
            names.len(),
            2,
            "{what}: only the archive and out/ remain: {names:?}"
        );
    }
    assert!(!Path::new("/tmp/brigade-evil-abs").exists());
}

#[test]
fn corrupt_archive_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bad.tar.gz");
    tarball(&archive, &[E::File("top/a.txt", &body(100_000))]);
    let bytes = fs::read(&archive).unwrap();
    fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let dest = dir.path().join("data");
    let err = extract_tar_gz(&archive, &dest, &ExtractOptions::default()).unwrap_err();
    assert!(
        matches!(err, FetchError::Archive { .. } | FetchError::Io { .. }),
        "{err}"
    );
    assert!(!dest.exists());
    let mut f = fs::File::open(&archive).unwrap();
    let mut head = [0u8; 2];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head, [0x1f, 0x8b]);
}
