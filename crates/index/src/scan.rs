//! Layout detection, listing, parallel probing and split assignment.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::IndexError;
use crate::probe::{probe_file, ImageFormat};
use crate::problem::{Problem, ProblemKind};
use crate::{ClassId, Index, Sample, Split, MAX_PIXELS, MAX_SIDE};

/// The dataset layouts brigade understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The official Food-101 archive: `meta/{classes,labels,train,test}.txt`
    /// and `images/<class>/<id>.jpg`.
    Food101,
    /// The fastai copy: `classes.txt`, `train.txt`, `test.txt` at the root
    /// and `images/<class>/<id>.jpg`.
    Fastai,
    /// `root/<class>/*.{jpg,jpeg,png,webp,...}`, optionally under `train/`,
    /// `val/`, `valid/` or `validation/`, and `test/`.
    ImageFolder,
}

impl Layout {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Food101 => "food101",
            Layout::Fastai => "fastai",
            Layout::ImageFolder => "image_folder",
        }
    }
}

/// How to build an index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexOptions {
    /// Fraction of each class's training samples held out as [`Split::Valid`]
    /// (0 ≤ p < 1). Must be 0 when the layout has its own validation folder.
    pub valid_pct: f64,
    /// Seed of every random choice (sampling and hold-out).
    pub seed: u64,
    /// Fraction of each class and split kept (0 < f ≤ 1), e.g. 0.25 for the
    /// notebook's 25 % sample. Applied before the validation hold-out.
    pub sample_frac: f64,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            valid_pct: 0.0,
            seed: 0,
            sample_frac: 1.0,
        }
    }
}

/// What indexing found, besides the index itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub layout: Layout,
    /// The resolved dataset root (the `food-101` folder when given its parent).
    pub root: PathBuf,
    /// Human-readable class names (`labels.txt` when present, else the class names).
    pub labels: Vec<String>,
    /// Entries listed (or found, for ImageFolder) before any exclusion.
    pub candidates: usize,
    /// Valid entries left out by `sample_frac`.
    pub sampled_out: usize,
    /// Hidden files and folders (name starting with `.`) skipped while walking.
    pub hidden_skipped: usize,
    /// Every problem found, sorted by path.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Problems whose file was left out of the index.
    pub fn excluded(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.kind.excluded())
    }
}

struct Candidate {
    path: PathBuf,
    class: ClassId,
    split: Split,
}

struct Listing {
    layout: Layout,
    root: PathBuf,
    classes: Vec<String>,
    labels: Vec<String>,
    candidates: Vec<Candidate>,
    problems: Vec<Problem>,
    hidden: usize,
}

pub(crate) fn build(root: &Path, opts: &IndexOptions) -> Result<(Index, Report), IndexError> {
    if !(0.0..1.0).contains(&opts.valid_pct) {
        return Err(IndexError::BadOption {
            option: "valid_pct",
            problem: format!("{} is not in [0, 1)", opts.valid_pct),
        });
    }
    if !(opts.sample_frac > 0.0 && opts.sample_frac <= 1.0) {
        return Err(IndexError::BadOption {
            option: "sample_frac",
            problem: format!("{} is not in (0, 1]", opts.sample_frac),
        });
    }
    let meta = fs::metadata(root).map_err(|e| IndexError::io(root, e))?;
    if !meta.is_dir() {
        return Err(IndexError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut listing = detect_and_list(root)?;
    let root = listing.root.clone();

    let probes: Vec<_> = listing
        .candidates
        .par_iter()
        .map(|c| probe_file(&root.join(&c.path)))
        .collect();

    let mut kept: Vec<Sample> = Vec::with_capacity(listing.candidates.len());
    for (c, probe) in listing.candidates.iter().zip(probes) {
        let problem = |kind| Problem {
            path: c.path.clone(),
            kind,
        };
        match probe {
            Err(e) => listing.problems.push(problem(e.into())),
            Ok(p) => {
                let (w, h) = (p.width, p.height);
                if w == 0 || h == 0 {
                    listing.problems.push(problem(ProblemKind::ZeroDimension {
                        width: w,
                        height: h,
                    }));
                    continue;
                }
                if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
                    listing.problems.push(problem(ProblemKind::HugeDimension {
                        width: w,
                        height: h,
                    }));
                    continue;
                }
                let ext = extension(&c.path);
                if ImageFormat::from_extension(&ext) != Some(p.format) {
                    listing
                        .problems
                        .push(problem(ProblemKind::ExtensionMismatch {
                            extension: ext,
                            actual: p.format,
                        }));
                }
                kept.push(Sample {
                    path: c.path.clone(),
                    class: c.class,
                    split: c.split,
                    width: w,
                    height: h,
                    file_len: p.file_len,
                });
            }
        }
    }

    let has_valid = kept.iter().any(|s| s.split == Split::Valid);
    if has_valid && opts.valid_pct > 0.0 {
        return Err(IndexError::BadOption {
            option: "valid_pct",
            problem: format!(
                "{}: the dataset has its own validation folder; use valid_pct = 0",
                root.display()
            ),
        });
    }
    let n_valid = kept.len();
    let kept = sample(kept, listing.classes.len(), opts);
    let sampled_out = n_valid - kept.len();
    let mut samples = kept;
    hold_out(&mut samples, listing.classes.len(), opts);
    let index = Index {
        root: root.clone(),
        classes: listing.classes,
        samples,
    };
    for split in Split::ALL {
        let counts = index.class_counts(split);
        // Only splits that exist: a dataset without a test split is fine.
        if counts.iter().all(|&c| c == 0) {
            continue;
        }
        for (class, _) in counts.iter().enumerate().filter(|(_, &c)| c == 0) {
            listing.problems.push(Problem {
                path: PathBuf::from(&index.classes[class]),
                kind: ProblemKind::ClassWithoutImages { split },
            });
        }
    }

    listing.problems.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then_with(|| a.kind.name().cmp(b.kind.name()))
    });
    let report = Report {
        layout: listing.layout,
        root,
        labels: listing.labels,
        candidates: listing.candidates.len(),
        sampled_out,
        hidden_skipped: listing.hidden,
        problems: listing.problems,
    };
    Ok((index, report))
}

fn extension(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A 64-bit mix (splitmix64 finaliser) to derive independent seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, purpose: u64, class: ClassId, split: Split) -> ChaCha8Rng {
    let s = mix(mix(mix(seed) ^ purpose) ^ u64::from(class)) ^ split as u64;
    ChaCha8Rng::seed_from_u64(mix(s))
}

fn take_count(n: usize, frac: f64) -> usize {
    ((n as f64) * frac).round() as usize
}

/// Keeps `sample_frac` of every (class, split) group, chosen by seed.
fn sample(samples: Vec<Sample>, n_classes: usize, opts: &IndexOptions) -> Vec<Sample> {
    if opts.sample_frac >= 1.0 {
        return samples;
    }
    let mut keep = vec![false; samples.len()];
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n_classes * Split::ALL.len()];
    for (i, s) in samples.iter().enumerate() {
        groups[s.class as usize * Split::ALL.len() + s.split as usize].push(i);
    }
    for (g, mut ids) in groups.into_iter().enumerate() {
        if ids.is_empty() {
            continue;
        }
        let class = (g / Split::ALL.len()) as ClassId;
        let split = Split::ALL[g % Split::ALL.len()];
        let n = take_count(ids.len(), opts.sample_frac).max(1);
        ids.shuffle(&mut rng_for(opts.seed, 1, class, split));
        for &i in &ids[..n] {
            keep[i] = true;
        }
    }
    samples
        .into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect()
}

/// Moves `valid_pct` of every class's training samples to [`Split::Valid`].
fn hold_out(samples: &mut [Sample], n_classes: usize, opts: &IndexOptions) {
    if opts.valid_pct <= 0.0 {
        return;
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, s) in samples.iter().enumerate() {
        if s.split == Split::Train {
            by_class[s.class as usize].push(i);
        }
    }
    for (class, mut ids) in by_class.into_iter().enumerate() {
        let n = take_count(ids.len(), opts.valid_pct);
        ids.shuffle(&mut rng_for(opts.seed, 2, class as ClassId, Split::Train));
        for &i in &ids[..n] {
            samples[i].split = Split::Valid;
        }
    }
}

fn detect_and_list(root: &Path) -> Result<Listing, IndexError> {
    let nested = root.join("food-101");
    for base in [root, nested.as_path()] {
        if base.join("meta").join("classes.txt").is_file() {
            return list_food(base, Layout::Food101, Path::new("meta"));
        }
    }
    for base in [root, nested.as_path()] {
        if base.join("classes.txt").is_file() && base.join("train.txt").is_file() {
            return list_food(base, Layout::Fastai, Path::new(""));
        }
    }
    let mut listing = list_image_folder(root)?;
    // `food-101/images` given instead of `food-101`: every image would land
    // in train, the official test images included. Say so.
    if let Some(parent) = root.parent() {
        let parent_layout = if parent.join("meta").join("classes.txt").is_file() {
            Some(Layout::Food101)
        } else if parent.join("classes.txt").is_file() && parent.join("train.txt").is_file() {
            Some(Layout::Fastai)
        } else {
            None
        };
        if let Some(layout) = parent_layout {
            listing.problems.push(Problem {
                path: PathBuf::from("."),
                kind: ProblemKind::InsideListedDataset {
                    parent: parent.to_path_buf(),
                    layout,
                },
            });
        }
    }
    Ok(listing)
}

fn read_text(path: &Path) -> Result<String, IndexError> {
    let bytes = fs::read(path).map_err(|e| IndexError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        IndexError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text: {e}"),
            ),
        )
    })
}

fn read_class_list(path: &Path) -> Result<Vec<String>, IndexError> {
    let text = read_text(path)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        let bad = |problem: String| IndexError::BadClassList {
            path: path.to_path_buf(),
            line_no: i + 1,
            problem,
        };
        if name.contains('/') || name.contains('\\') || name == "." || name == ".." {
            return Err(bad(format!("class name {name:?} is not a folder name")));
        }
        if !seen.insert(name.to_string()) {
            return Err(bad(format!("class {name:?} listed twice")));
        }
        out.push(name.to_string());
    }
    if out.is_empty() {
        return Err(IndexError::BadClassList {
            path: path.to_path_buf(),
            line_no: 0,
            problem: "no classes listed".into(),
        });
    }
    Ok(out)
}

fn list_food(base: &Path, layout: Layout, meta_rel: &Path) -> Result<Listing, IndexError> {
    let meta = base.join(meta_rel);
    let classes = read_class_list(&meta.join("classes.txt"))?;
    let labels = match read_text(&meta.join("labels.txt")) {
        Ok(t) => {
            let l: Vec<String> = t
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if l.len() == classes.len() {
                l
            } else {
                classes.clone()
            }
        }
        Err(_) => classes.clone(),
    };
    let class_of: HashMap<&str, ClassId> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as ClassId))
        .collect();
    let mut problems = Vec::new();
    let mut candidates = Vec::new();
    let mut listed: HashMap<PathBuf, Split> = HashMap::new();
    for (file, split) in [("train.txt", Split::Train), ("test.txt", Split::Test)] {
        let list_rel = meta_rel.join(file);
        let list_path = base.join(&list_rel);
        if !list_path.is_file() {
            return Err(IndexError::MissingFile {
                path: list_path,
                what: "split list",
            });
        }
        let text = read_text(&list_path)?;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let entry = line.strip_prefix("images/").unwrap_or(line);
            let parsed = entry.split_once('/').filter(|(c, id)| {
                !c.is_empty() && !id.is_empty() && !id.split('/').any(|p| p == ".." || p.is_empty())
            });
            let Some((class, _)) = parsed else {
                problems.push(Problem {
                    path: list_rel.clone(),
                    kind: ProblemKind::BadListLine {
                        line_no: i + 1,
                        line: line.to_string(),
                    },
                });
                continue;
            };
            let mut rel = PathBuf::from("images").join(entry);
            if ImageFormat::from_extension(&extension(&rel)).is_none() {
                rel = PathBuf::from(format!("images/{entry}.jpg"));
            }
            let Some(&class_id) = class_of.get(class) else {
                problems.push(Problem {
                    path: rel,
                    kind: ProblemKind::UnknownClass {
                        class: class.to_string(),
                    },
                });
                continue;
            };
            if let Some(&first) = listed.get(&rel) {
                problems.push(Problem {
                    path: rel,
                    kind: ProblemKind::Duplicate {
                        first,
                        again: split,
                    },
                });
                continue;
            }
            listed.insert(rel.clone(), split);
            candidates.push(Candidate {
                path: rel,
                class: class_id,
                split,
            });
        }
    }
    let mut hidden = 0;
    let images = base.join("images");
    if !images.is_dir() {
        return Err(IndexError::MissingFile {
            path: images,
            what: "image folder",
        });
    }
    let mut files = Vec::new();
    walk_files(&images, Path::new("images"), &mut files, &mut hidden, 0)?;
    for f in files {
        if !listed.contains_key(&f) {
            problems.push(Problem {
                path: f,
                kind: ProblemKind::Unlisted,
            });
        }
    }
    Ok(Listing {
        layout,
        root: base.to_path_buf(),
        classes,
        labels,
        candidates,
        problems,
        hidden,
    })
}

const MAX_DEPTH: usize = 32;

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Sorted entries of a directory: (name, is_dir).
fn read_dir_sorted(dir: &Path) -> Result<Vec<(std::ffi::OsString, bool)>, IndexError> {
    let rd = fs::read_dir(dir).map_err(|e| IndexError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| IndexError::io(dir, e))?;
        let path = entry.path();
        // Follow symlinks; a dangling link counts as a file (its probe reports it).
        let is_dir = fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
        out.push((entry.file_name(), is_dir));
    }
    out.sort();
    Ok(out)
}

/// Every file under `dir` (recursively, sorted), as paths under `rel`.
fn walk_files(
    dir: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
    hidden: &mut usize,
    depth: usize,
) -> Result<(), IndexError> {
    if depth > MAX_DEPTH {
        return Err(IndexError::io(
            dir,
            std::io::Error::other(format!(
                "folder nesting deeper than {MAX_DEPTH} (symlink loop?)"
            )),
        ));
    }
    for (name, is_dir) in read_dir_sorted(dir)? {
        if is_hidden(&name) {
            *hidden += 1;
            continue;
        }
        let r = rel.join(&name);
        if is_dir {
            walk_files(&dir.join(&name), &r, out, hidden, depth + 1)?;
        } else {
            out.push(r);
        }
    }
    Ok(())
}

/// Image files an ImageFolder-style tree indexes (torchvision's
/// `IMG_EXTENSIONS` that the decoder reads, plus GIF as fastai takes it;
/// matched case-insensitively). Anything else is reported, not indexed.
const FOLDER_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

fn list_image_folder(root: &Path) -> Result<Listing, IndexError> {
    let top = read_dir_sorted(root)?;
    let mut hidden = 0;
    let mut problems = Vec::new();
    let has_splits = top.iter().any(|(n, d)| *d && n == "train");
    // (folder relative to root, split)
    let mut split_dirs: Vec<(PathBuf, Split)> = Vec::new();
    if has_splits {
        for (name, is_dir) in &top {
            let split = match name.to_str() {
                Some("train") if *is_dir => Some(Split::Train),
                Some("val" | "valid" | "validation") if *is_dir => Some(Split::Valid),
                Some("test") if *is_dir => Some(Split::Test),
                _ => None,
            };
            match split {
                Some(s) => split_dirs.push((PathBuf::from(name), s)),
                None if is_hidden(name) => hidden += 1,
                None => problems.push(Problem {
                    path: PathBuf::from(name),
                    kind: ProblemKind::OutsideClassFolder,
                }),
            }
        }
    } else {
        split_dirs.push((PathBuf::new(), Split::Train));
    }
    // (class name, folder relative to root, split)
    let mut class_dirs: Vec<(String, PathBuf, Split)> = Vec::new();
    for (rel, split) in &split_dirs {
        for (name, is_dir) in read_dir_sorted(&root.join(rel))? {
            if is_hidden(&name) {
                hidden += 1;
                continue;
            }
            let r = rel.join(&name);
            match (is_dir, name.into_string()) {
                (true, Ok(class)) => class_dirs.push((class, r, *split)),
                _ => problems.push(Problem {
                    path: r,
                    kind: ProblemKind::OutsideClassFolder,
                }),
            }
        }
    }
    let classes: Vec<String> = class_dirs
        .iter()
        .map(|(c, _, _)| c.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let class_of: HashMap<&str, ClassId> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as ClassId))
        .collect();
    let mut candidates = Vec::new();
    for (class, rel, split) in &class_dirs {
        let mut files = Vec::new();
        walk_files(&root.join(rel), rel, &mut files, &mut hidden, 0)?;
        for f in files {
            if FOLDER_EXTENSIONS.contains(&extension(&f).as_str()) {
                candidates.push(Candidate {
                    path: f,
                    class: class_of[class.as_str()],
                    split: *split,
                });
            } else {
                problems.push(Problem {
                    path: f,
                    kind: ProblemKind::NotAnImage,
                });
            }
        }
    }
    if candidates.is_empty() {
        return Err(IndexError::NoLayout {
            path: root.to_path_buf(),
        });
    }
    Ok(Listing {
        layout: Layout::ImageFolder,
        root: root.to_path_buf(),
        labels: classes.clone(),
        classes,
        candidates,
        problems,
        hidden,
    })
}
