//! Reading weight files into named tensors: torchvision `.pth` (the zip
//! format of `torch.save(model.state_dict())`) and `.safetensors`.

use std::io::Read;
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
    /// Hugging Face safetensors.
    Safetensors,
}

/// Sniffs a file's format from its first bytes.
pub fn detect_format(path: &Path) -> Result<Format> {
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut head = [0u8; 16];
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
    if head.starts_with(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19") {
        return Err(bad(
            path,
            "legacy (pre-1.6, non-zip) torch.save format is not supported: re-save it with \
             torch.save(torch.load(path), path) in a current PyTorch",
        ));
    }
    if n >= 9 && head[8] == b'{' {
        return Ok(Format::Safetensors);
    }
    if n == 0 {
        return Err(bad(path, "empty file: not a weights file"));
    }
    Err(bad(
        path,
        "not a weights file (neither a torch.save zip archive nor safetensors)",
    ))
}

/// Reads every tensor of a `.pth` or `.safetensors` file (format sniffed from
/// the content) onto the CPU.
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    match detect_format(path)? {
        Format::TorchZip => read_pth(path),
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
    let value = pickle::parse(&pkl).map_err(|e| match e {
        PickleError::Forbidden { module, name } => ZooError::ForbiddenGlobal {
            path: path.to_path_buf(),
            module,
            name,
        },
        PickleError::Malformed(m) => bad(path, format!("data.pkl: {m}")),
    })?;
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
    let numel =
        i64::try_from(t.storage.numel).map_err(|_| ZooError::Config("storage too large".into()))?;
    let problem = |m: String| ZooError::BadFile {
        path: Default::default(),
        problem: m,
    };
    if t.offset < 0 || t.stride.iter().any(|&s| s < 0) || t.size.iter().any(|&s| s < 0) {
        return Err(problem("negative offset, size or stride".into()));
    }
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
    let s = storage(&t.storage)?;
    Ok(
        s.f_as_strided(t.size.as_slice(), t.stride.as_slice(), Some(t.offset))?
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
