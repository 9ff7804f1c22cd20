//! Reading weight files into named tensors: torchvision `.pth` (the zip
//! format of `torch.save(model.state_dict())`, and the legacy non-zip format
//! of PyTorch < 1.6) and `.safetensors`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{bad, io, Result, ZooError};
use crate::pickle::{self, PickleError, StorageDtype, TensorRef, Value};

/// Named tensors in file order.
pub type StateDict = Vec<(String, Tensor)>;

/// The weight-file formats this crate recognises (by content, not by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` zip archive (PyTorch >= 1.6).
    TorchZip,
    /// Legacy `torch.save` file (PyTorch < 1.6, or
    /// `_use_new_zipfile_serialization=False`): pickles back to back, then
    /// the raw storages.
    TorchLegacy,
    /// Hugging Face safetensors.
    Safetensors,
}

/// The legacy format's magic number, `0x1950a86a20f9469cfc6c`, as the
/// little-endian bytes of its pickled `LONG1`.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The only legacy protocol version (`torch.serialization.PROTOCOL_VERSION`).
const LEGACY_PROTOCOL: i64 = 1001;

/// Whether `head` (a file's first bytes) starts like a legacy `torch.save`
/// file: a pickle (protocol 2 to 5, maybe framed) whose first value is a
/// 10-byte `LONG1`, torch's magic number. Only the bytes are matched (the
/// reader checks the value), so that a truncated file is reported as such.
fn is_legacy_head(head: &[u8]) -> bool {
    let [0x80, 2..=5, rest @ ..] = head else {
        return false;
    };
    let rest = match rest {
        [0x95, _, _, _, _, _, _, _, _, r @ ..] => r,
        r => r,
    };
    rest.starts_with(&[0x8a, 0x0a])
}

/// Sniffs a file's format from its first bytes: a zip archive
/// ([`Format::TorchZip`]), pickles starting with torch's magic number
/// ([`Format::TorchLegacy`]), or a safetensors header ([`Format::Safetensors`]).
/// Anything else (including the tar-based `torch.save` of PyTorch 0.1) is a
/// [`ZooError::BadFile`] naming the file.
pub fn detect_format(path: &Path) -> Result<Format> {
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let got = f.read(&mut head[n..]).map_err(|e| io(path, e))?;
        if got == 0 {
            break;
        }
        n += got;
    }
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(Format::TorchZip);
    }
    if is_legacy_head(head) {
        return Ok(Format::TorchLegacy);
    }
    if n >= 9 && head[8] == b'{' {
        return Ok(Format::Safetensors);
    }
    if n >= 262 && &head[257..262] == b"ustar" {
        return Err(bad(
            path,
            "a tar archive: the tar-based torch.save format of PyTorch 0.1 is not supported; \
             re-save it with torch.save(torch.load(path), path) in a current PyTorch",
        ));
    }
    if n == 0 {
        return Err(bad(path, "empty file: not a weights file"));
    }
    Err(bad(
        path,
        "not a weights file (neither a torch.save file, zip or legacy, nor safetensors)",
    ))
}

/// Reads every tensor of a `.pth` (zip or legacy) or `.safetensors` file
/// (format sniffed from the content) onto the CPU.
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    match detect_format(path)? {
        Format::TorchZip => read_pth(path),
        Format::TorchLegacy => read_pth_legacy(path),
        Format::Safetensors => read_safetensors(path).map(|(sd, _)| sd),
    }
}

fn kind_of(d: StorageDtype) -> Kind {
    match d {
        StorageDtype::F32 => Kind::Float,
        StorageDtype::F64 => Kind::Double,
        StorageDtype::F16 => Kind::Half,
        StorageDtype::BF16 => Kind::BFloat16,
        StorageDtype::I64 => Kind::Int64,
        StorageDtype::I32 => Kind::Int,
        StorageDtype::I16 => Kind::Int16,
        StorageDtype::I8 => Kind::Int8,
        StorageDtype::U8 => Kind::Uint8,
        StorageDtype::Bool => Kind::Bool,
    }
}

/// Reads a `torch.save` zip archive holding a state dict (an `OrderedDict` of
/// tensors, possibly nested under a `state_dict`/`model` key).
pub fn read_pth(path: &Path) -> Result<StateDict> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        bad(
            path,
            format!("not a readable zip archive ({e}); truncated or damaged download?"),
        )
    })?;
    let pkl_name = zip
        .file_names()
        .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| bad(path, "zip archive has no data.pkl: not a torch.save file"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();

    let read_entry = |zip: &mut zip::ZipArchive<std::io::BufReader<std::fs::File>>,
                      name: &str|
     -> Result<Vec<u8>> {
        let mut e = zip
            .by_name(name)
            .map_err(|err| bad(path, format!("archive entry {name}: {err}")))?;
        let mut buf = Vec::with_capacity(usize::try_from(e.size()).unwrap_or(0).min(1 << 30));
        e.read_to_end(&mut buf)
            .map_err(|err| bad(path, format!("archive entry {name}: {err} (truncated?)")))?;
        Ok(buf)
    };

    if let Ok(bo) = read_entry(&mut zip, &format!("{prefix}byteorder")) {
        if bo.trim_ascii() != b"little" {
            return Err(bad(
                path,
                "big-endian torch.save archives are not supported",
            ));
        }
    }
    let pkl = read_entry(&mut zip, &pkl_name)?;
    let value = pickle::parse(&pkl).map_err(|e| pickle_error(path, e, "data.pkl: "))?;
    let dict = find_state_dict(value).ok_or_else(|| {
        bad(
            path,
            "data.pkl does not hold a dict of tensors (a state_dict)",
        )
    })?;

    let mut storages: std::collections::HashMap<String, Tensor> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(dict.len());
    for (key, t) in dict {
        let key_s = key.clone();
        let tensor = build_tensor(&t, |st| {
            if let Some(s) = storages.get(&st.key) {
                return Ok(s.shallow_clone());
            }
            let bytes = read_entry(&mut zip, &format!("{prefix}data/{}", st.key))?;
            let elt = st.dtype.size();
            let want = usize::try_from(st.numel).ok().and_then(|n| n.checked_mul(elt));
            if want != Some(bytes.len()) {
                return Err(bad(
                    path,
                    format!(
                        "storage data/{} holds {} bytes, the pickle says {} elements of {elt} bytes",
                        st.key,
                        bytes.len(),
                        st.numel
                    ),
                ));
            }
            let numel = i64::try_from(st.numel).map_err(|_| bad(path, "storage too large"))?;
            let s = Tensor::f_from_data_size(&bytes, &[numel], kind_of(st.dtype))?;
            storages.insert(st.key.clone(), s.shallow_clone());
            Ok(s)
        })
        .map_err(|e| match e {
            ZooError::BadFile { problem, .. } => bad(path, format!("tensor {key_s}: {problem}")),
            other => other,
        })?;
        out.push((key, tensor));
    }
    Ok(out)
}

fn pickle_error(path: &Path, e: PickleError, context: &str) -> ZooError {
    match e {
        PickleError::Forbidden { module, name } => ZooError::ForbiddenGlobal {
            path: path.to_path_buf(),
            module,
            name,
        },
        PickleError::Malformed(m) => bad(path, format!("{context}{m}")),
    }
}

/// The five pickles at the start of a legacy file.
struct LegacyHeader {
    /// The pickled object (the state dict or a checkpoint holding one).
    object: Value,
    /// Every root storage the object names, by key.
    storages: std::collections::HashMap<String, pickle::StorageRef>,
    /// The storage keys in the order their data follows.
    keys: Vec<String>,
    /// Where the first storage's data starts.
    data_start: u64,
}

/// Parses the pickles of a legacy file from `head` (its first bytes, maybe
/// not all of it). The error says which pickle is at fault.
fn parse_legacy_header(
    head: &[u8],
) -> std::result::Result<LegacyHeader, (&'static str, PickleError)> {
    let m = |s: String| PickleError::Malformed(s);
    let magic = pickle::parse_at(head, 0).map_err(|e| ("magic-number pickle", e))?;
    if magic.value != Value::BigInt(LEGACY_MAGIC.to_vec()) {
        return Err((
            "magic-number pickle",
            m("it is not torch's magic number".into()),
        ));
    }
    let version = pickle::parse_at(head, magic.end).map_err(|e| ("protocol-version pickle", e))?;
    if version.value != Value::Int(LEGACY_PROTOCOL) {
        return Err((
            "protocol-version pickle",
            m(match version.value {
                Value::Int(v) => {
                    format!("unsupported legacy protocol version {v} (want {LEGACY_PROTOCOL})")
                }
                other => format!("expected the protocol version {LEGACY_PROTOCOL}, got {other:?}"),
            }),
        ));
    }
    let sys_info = pickle::parse_at(head, version.end).map_err(|e| ("system-info pickle", e))?;
    if !matches!(sys_info.value, Value::Dict(_)) {
        return Err(("system-info pickle", m("not a dict".into())));
    }
    let object =
        pickle::parse_at(head, sys_info.end).map_err(|e| ("pickle of the saved object", e))?;
    let list = pickle::parse_at(head, object.end).map_err(|e| ("storage-list pickle", e))?;
    let Value::List(items) = list.value else {
        return Err(("storage-list pickle", m("not a list".into())));
    };
    let keys = items
        .iter()
        .map(|k| match k {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            other => Err((
                "storage-list pickle",
                m(format!("a storage key is a {other:?}")),
            )),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let storages = object
        .storages
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    Ok(LegacyHeader {
        object: object.value,
        storages,
        keys,
        data_start: list.end as u64,
    })
}

/// Reads a legacy (pre-1.6, non-zip) `torch.save` file holding a state dict
/// (possibly nested under a `state_dict`/`model` key, as [`read_pth`]): the
/// pickled magic number, protocol version and system info, the pickled
/// object (storages are persistent ids), the pickled list of storage keys,
/// then each storage as an i64 element count and its little-endian bytes.
///
/// The file is read once: the pickles from a growing prefix, then each
/// storage the state dict uses straight into a tensor (storages of other
/// entries, e.g. an optimizer state, are skipped, not read). Every count is
/// checked against the pickle and the file's length before anything is
/// allocated, so a truncated or damaged file is an error naming the file.
pub fn read_pth_legacy(path: &Path) -> Result<StateDict> {
    let mut file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let len = file.metadata().map_err(|e| io(path, e))?.len();

    // The pickles come first and are small next to the storages: parse them
    // from a prefix of the file, growing it until they all fit.
    let mut head: Vec<u8> = Vec::new();
    let mut want: u64 = len.min(1 << 20);
    let header = loop {
        let missing = want.saturating_sub(head.len() as u64);
        let got = (&mut file)
            .take(missing)
            .read_to_end(&mut head)
            .map_err(|e| io(path, e))?;
        let at_end = head.len() as u64 >= len || (got as u64) < missing;
        match parse_legacy_header(&head) {
            Ok(h) => break h,
            // A prefix cut inside a pickle is malformed (truncated); a
            // forbidden global is final.
            Err((_, PickleError::Malformed(_))) if !at_end => {
                want = want.saturating_mul(4).min(len)
            }
            Err((which, e)) => {
                let hint = match &e {
                    PickleError::Malformed(m) if m.contains("truncated") => {
                        "; the file is truncated or damaged (incomplete download?)"
                    }
                    _ => "",
                };
                return Err(
                    match pickle_error(path, e, &format!("legacy torch.save file, {which}: ")) {
                        ZooError::BadFile { path, problem } => ZooError::BadFile {
                            path,
                            problem: format!("{problem}{hint}"),
                        },
                        other => other,
                    },
                );
            }
        }
    };
    drop(head);

    let dict = find_state_dict(header.object).ok_or_else(|| {
        bad(
            path,
            "legacy torch.save file: the pickled object is not a dict of tensors (a state_dict)",
        )
    })?;
    let needed: std::collections::HashSet<&str> =
        dict.iter().map(|(_, t)| t.storage.key.as_str()).collect();

    let n_keys = header.keys.len();
    let mut storages: std::collections::HashMap<String, Tensor> = std::collections::HashMap::new();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = header.data_start;
    for (i, key) in header.keys.iter().enumerate() {
        let which = format!("storage {key} ({} of {n_keys}, at byte {pos})", i + 1);
        if !seen.insert(key.as_str()) {
            return Err(bad(
                path,
                format!("legacy torch.save file is damaged: {which} is listed twice"),
            ));
        }
        let st = header.storages.get(key).ok_or_else(|| {
            bad(
                path,
                format!("legacy torch.save file is damaged: {which} is in the storage list but the pickle never names it"),
            )
        })?;
        let truncated = |what: String| {
            bad(
                path,
                format!(
                    "legacy torch.save file is truncated or damaged (incomplete download?): {which} {what}, \
                     but the file is only {len} bytes"
                ),
            )
        };
        if len.saturating_sub(pos) < 8 {
            return Err(truncated("starts with an 8-byte element count".into()));
        }
        file.seek(SeekFrom::Start(pos)).map_err(|e| io(path, e))?;
        let mut count = [0u8; 8];
        file.read_exact(&mut count).map_err(|e| io(path, e))?;
        let count = i64::from_le_bytes(count);
        let elt = st.dtype.size();
        let nbytes = u64::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(elt as u64))
            .ok_or_else(|| {
                bad(
                    path,
                    format!("legacy torch.save file is damaged: {which} has an impossible element count {count}"),
                )
            })?;
        let data_end = pos + 8;
        if len - data_end < nbytes {
            return Err(truncated(format!(
                "holds {count} elements of {elt} bytes ({nbytes} bytes from byte {data_end})"
            )));
        }
        if count as u64 != st.numel {
            return Err(bad(
                path,
                format!(
                    "legacy torch.save file is damaged: {which} holds {count} elements, the pickle says {}",
                    st.numel
                ),
            ));
        }
        if needed.contains(key.as_str()) {
            let n =
                usize::try_from(nbytes).map_err(|_| bad(path, format!("{which} is too large")))?;
            buf.clear();
            buf.resize(n, 0);
            file.read_exact(&mut buf).map_err(|e| io(path, e))?;
            let s = Tensor::f_from_data_size(&buf, &[count], kind_of(st.dtype))?;
            storages.insert(key.clone(), s);
        }
        pos = data_end + nbytes;
    }

    let mut out = Vec::with_capacity(dict.len());
    for (name, t) in dict {
        let tensor = build_tensor(&t, |st| {
            storages
                .get(&st.key)
                .map(Tensor::shallow_clone)
                .ok_or_else(|| ZooError::BadFile {
                    path: Default::default(),
                    problem: format!(
                        "its storage {} has no data in the file (not in the storage list)",
                        st.key
                    ),
                })
        })
        .map_err(|e| match e {
            ZooError::BadFile { problem, .. } => bad(
                path,
                format!("legacy torch.save file, tensor {name}: {problem}"),
            ),
            other => other,
        })?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Picks the dict of tensors out of the unpickled value: the value itself, or
/// its `state_dict` / `model` / `module` entry (common checkpoint wrappers).
fn find_state_dict(v: Value) -> Option<Vec<(String, TensorRef)>> {
    let Value::Dict(items) = v else { return None };
    let all_tensors = !items.is_empty()
        && items
            .iter()
            .all(|(k, v)| matches!((k, v), (Value::Str(_), Value::Tensor(_))));
    if all_tensors {
        return Some(
            items
                .into_iter()
                .filter_map(|(k, v)| match (k, v) {
                    (Value::Str(k), Value::Tensor(t)) => Some((k, t)),
                    _ => None,
                })
                .collect(),
        );
    }
    for (k, v) in items {
        if let Value::Str(k) = &k {
            if matches!(
                k.as_str(),
                "state_dict" | "model" | "module" | "model_state_dict"
            ) {
                if let Some(sd) = find_state_dict(v) {
                    return Some(sd);
                }
            }
        }
    }
    None
}

fn build_tensor(
    t: &TensorRef,
    mut storage: impl FnMut(&pickle::StorageRef) -> Result<Tensor>,
) -> Result<Tensor> {
    let problem = |m: String| ZooError::BadFile {
        path: Default::default(),
        problem: m,
    };
    let too_large = || problem("storage too large".into());
    let root_numel = i64::try_from(t.storage.numel).map_err(|_| too_large())?;
    if t.offset < 0 || t.stride.iter().any(|&s| s < 0) || t.size.iter().any(|&s| s < 0) {
        return Err(problem("negative offset, size or stride".into()));
    }
    // A legacy view: the tensor's storage is a slice of the root storage, its
    // offset counts from the slice's start.
    let (numel, base) = match &t.storage.view {
        None => (root_numel, 0),
        Some(v) => {
            let off = i64::try_from(v.offset).map_err(|_| too_large())?;
            let n = i64::try_from(v.numel).map_err(|_| too_large())?;
            if off.checked_add(n).is_none_or(|end| end > root_numel) {
                return Err(problem(format!(
                    "storage view {} (elements {off}..+{n}) reaches past its storage of {root_numel}",
                    v.key
                )));
            }
            (n, off)
        }
    };
    let empty = t.size.contains(&0);
    if !empty {
        let mut last = t.offset;
        for (&sz, &st) in t.size.iter().zip(&t.stride) {
            last = (sz - 1)
                .checked_mul(st)
                .and_then(|x| last.checked_add(x))
                .ok_or_else(|| problem("size/stride overflow".into()))?;
        }
        if last >= numel {
            return Err(problem(format!(
                "view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage of {numel}",
                t.offset, t.size, t.stride
            )));
        }
    }
    let offset = base.checked_add(t.offset).ok_or_else(too_large)?;
    let s = storage(&t.storage)?;
    Ok(
        s.f_as_strided(t.size.as_slice(), t.stride.as_slice(), Some(offset))?
            .f_contiguous()?,
    )
}

fn st_kind(d: safetensors::Dtype) -> Option<Kind> {
    use safetensors::Dtype as D;
    Some(match d {
        D::F32 => Kind::Float,
        D::F64 => Kind::Double,
        D::F16 => Kind::Half,
        D::BF16 => Kind::BFloat16,
        D::I64 => Kind::Int64,
        D::I32 => Kind::Int,
        D::I16 => Kind::Int16,
        D::I8 => Kind::Int8,
        D::U8 => Kind::Uint8,
        D::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// Reads a `.safetensors` file: its tensors (file order is the header's,
/// sorted by name) and its `__metadata__` map.
pub fn read_safetensors(
    path: &Path,
) -> Result<(StateDict, std::collections::HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(path, format!("not a valid safetensors file: {e:?}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(path, format!("not a valid safetensors file: {e:?}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let view = st
            .tensor(&name)
            .map_err(|e| bad(path, format!("tensor {name}: {e:?}")))?;
        let kind = st_kind(view.dtype()).ok_or_else(|| {
            bad(
                path,
                format!("tensor {name}: unsupported dtype {:?}", view.dtype()),
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.push((name, t));
    }
    Ok((out, metadata))
}

/// Writes named tensors as safetensors with metadata, atomically (temp file
/// in the same folder, fsync, rename).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: std::collections::HashMap<String, String>,
) -> Result<()> {
    struct Owned {
        dtype: safetensors::Dtype,
        shape: Vec<usize>,
        data: Vec<u8>,
    }
    impl safetensors::View for &Owned {
        fn dtype(&self) -> safetensors::Dtype {
            self.dtype
        }
        fn shape(&self) -> &[usize] {
            &self.shape
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            std::borrow::Cow::Borrowed(&self.data)
        }
        fn data_len(&self) -> usize {
            self.data.len()
        }
    }
    use safetensors::Dtype as D;
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let kind = t.f_kind()?;
        let dtype = match kind {
            Kind::Float => D::F32,
            Kind::Double => D::F64,
            Kind::Half => D::F16,
            Kind::BFloat16 => D::BF16,
            Kind::Int64 => D::I64,
            Kind::Int => D::I32,
            Kind::Int16 => D::I16,
            Kind::Int8 => D::I8,
            Kind::Uint8 => D::U8,
            Kind::Bool => D::BOOL,
            other => {
                return Err(ZooError::Config(format!(
                    "tensor {name}: cannot store kind {other:?}"
                )))
            }
        };
        let numel = t.numel();
        let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        owned.push((name.clone(), Owned { dtype, shape, data }));
    }
    let bytes = safetensors::serialize(owned.iter().map(|(n, o)| (n.clone(), o)), &Some(metadata))
        .map_err(|e| bad(path, format!("serialising safetensors: {e:?}")))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temp file in the same folder, fsynced
/// and renamed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| bad(path, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built legacy file in the style of PyTorch < 0.4 under Python 2:
    /// `SHORT_BINSTRING` strings, `_rebuild_tensor` (v1) on a storage view
    /// `('2', view_offset, 3)` of a 6-element root storage `'1'` holding
    /// 0..6, with tensor offset `w_offset`, size (2,); plus `_rebuild_tensor_v2`
    /// on the root itself (offset 4, size (2,)).
    fn legacy_file(view_offset: u8, w_offset: u8) -> Vec<u8> {
        let mut b = b"\x80\x02\x8a\x0a".to_vec();
        b.extend(LEGACY_MAGIC);
        b.extend(b".\x80\x02M\xe9\x03.\x80\x02}.");
        b.extend(b"\x80\x02ccollections\nOrderedDict\n)R(");
        b.extend(b"U\x01wctorch._utils\n_rebuild_tensor\n((U\x07storagectorch\nFloatStorage\n");
        b.extend(b"U\x011U\x03cpuK\x06(U\x012K");
        b.extend([view_offset]);
        b.extend(b"K\x03ttQK");
        b.extend([w_offset]);
        b.extend(b"K\x02\x85K\x01\x85tR");
        b.extend(b"U\x01vctorch._utils\n_rebuild_tensor_v2\n((U\x07storagectorch\nFloatStorage\n");
        b.extend(
            b"U\x011U\x06cuda:0K\x06NtQK\x04K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR",
        );
        b.extend(b"u.\x80\x02](U\x011e.");
        b.extend(6i64.to_le_bytes());
        for x in 0..6 {
            b.extend((x as f32).to_le_bytes());
        }
        b
    }

    fn read(bytes: &[u8]) -> Result<StateDict> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let path = dir.path().join("old.pth");
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        assert_eq!(detect_format(&path)?, Format::TorchLegacy);
        read_state_dict(&path)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        let mut v = vec![0f32; t.numel()];
        t.copy_data(&mut v, t.numel());
        v
    }

    #[test]
    fn views_v1_rebuild_and_python2_strings() {
        let sd = read(&legacy_file(2, 1)).unwrap();
        let names: Vec<&str> = sd.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["w", "v"]);
        // w: elements 1..3 of the view that starts at root element 2.
        assert_eq!(values(&sd[0].1), [3.0, 4.0]);
        assert_eq!(values(&sd[1].1), [4.0, 5.0]);
    }

    #[test]
    fn views_out_of_bounds_are_errors() {
        // The view (elements 5..8) reaches past the 6-element root.
        let e = read(&legacy_file(5, 0)).unwrap_err().to_string();
        assert!(
            e.contains("old.pth") && e.contains("tensor w") && e.contains("past its storage"),
            "{e}"
        );
        // The tensor (view elements 2..4) reaches past the 3-element view.
        let e = read(&legacy_file(2, 2)).unwrap_err().to_string();
        assert!(
            e.contains("tensor w") && e.contains("of a storage of 3"),
            "{e}"
        );
    }

    #[test]
    fn storage_list_must_match_the_pickle() {
        // The list names a storage the pickle never does.
        let mut b = legacy_file(2, 1);
        let at = b.windows(5).rposition(|w| w == b"U\x011e.").unwrap();
        b[at + 2] = b'9';
        let e = read(&b).unwrap_err().to_string();
        assert!(
            e.contains("storage 9") && e.contains("never names it"),
            "{e}"
        );
        // An empty list: the tensors' storage has no data.
        let mut b = legacy_file(2, 1);
        let at = b.windows(5).rposition(|w| w == b"(U\x011e").unwrap();
        b.drain(at..at + 5);
        let e = read(&b).unwrap_err().to_string();
        assert!(
            e.contains("tensor w") && e.contains("no data in the file"),
            "{e}"
        );
    }
}
