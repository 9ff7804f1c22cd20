//! A small, safe reader for the pickles `torch.save` writes.
//!
//! Only the opcodes `torch.save` (pickle protocols 2 to 4) emits are
//! understood, and only a whitelist of globals is accepted: nothing from the
//! file is ever executed. `REDUCE` is interpreted for the whitelisted callables
//! only (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_tensor` (PyTorch < 0.4), `torch._utils._rebuild_parameter`);
//! storages are the persistent ids `('storage', torch.<Dtype>Storage, key,
//! location, numel)` of the zip format and `(..., numel, view_metadata)` of the
//! legacy (pre-1.6) format.
//!
//! [`parse`] decodes a whole buffer's first pickle; [`parse_at`] decodes one
//! pickle starting at a byte offset and reports where it stopped, for files
//! that are several pickles back to back (the legacy `torch.save` format).
//!
//! Python 2 byte strings (`SHORT_BINSTRING`/`BINSTRING`) decode as text when
//! they are UTF-8, as `torch.load` does (`encoding="utf-8"`).
//!
//! Limitation (documented, harmless for state dicts): the memo stores copies,
//! so a container mutated after it was memoised is seen as it was when
//! memoised by a later `BINGET`.
//!
//! Crafted pickles cannot exhaust memory or the thread's stack: containers
//! nest at most [`MAX_DEPTH`] levels (dropping, cloning and walking a value
//! recurse), and the copies the memo makes are capped at [`MAX_COPIED`]
//! bytes (a list doubled through `BINGET` sixty times would otherwise ask
//! for 2^60 values from a few hundred bytes of file).

use std::collections::HashMap;

/// Element type of a storage, from its `torch.<X>Storage` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    /// `torch.FloatStorage`
    F32,
    /// `torch.DoubleStorage`
    F64,
    /// `torch.HalfStorage`
    F16,
    /// `torch.BFloat16Storage`
    BF16,
    /// `torch.LongStorage`
    I64,
    /// `torch.IntStorage`
    I32,
    /// `torch.ShortStorage`
    I16,
    /// `torch.CharStorage`
    I8,
    /// `torch.ByteStorage`
    U8,
    /// `torch.BoolStorage`
    Bool,
}

impl StorageDtype {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A storage reference: `data/<key>` in a zip archive, or the key of a
/// legacy file's storage list.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Element type.
    pub dtype: StorageDtype,
    /// The record name inside the archive's `data/` folder (the root
    /// storage's key in the legacy format).
    pub key: String,
    /// Number of elements the pickle claims (of the root storage).
    pub numel: u64,
    /// Legacy format only: the tensor sees a slice of the root storage.
    pub view: Option<StorageView>,
}

/// A slice of a root storage (the legacy format's `view_metadata`,
/// `(view_key, offset, size)`, written by PyTorch < 0.4).
#[derive(Debug, Clone, PartialEq)]
pub struct StorageView {
    /// The view's own key.
    pub key: String,
    /// First element of the root storage the view covers.
    pub offset: u64,
    /// Number of elements the view covers.
    pub numel: u64,
}

/// A tensor: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage.
    pub storage: StorageRef,
    /// Offset, in elements.
    pub offset: i64,
    /// Shape.
    pub size: Vec<i64>,
    /// Strides, in elements.
    pub stride: Vec<i64>,
}

/// Whitelisted globals.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor` (PyTorch < 0.4)
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`
    RebuildParameter,
    /// `torch.<X>Storage`
    Storage(StorageDtype),
}

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`
    None,
    /// `True`/`False`
    Bool(bool),
    /// An integer (that fits i64).
    Int(i64),
    /// A wider integer, as `LONG1` stores it: little-endian two's complement
    /// (e.g. the legacy format's magic number).
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or OrderedDict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A whitelisted global.
    Global(Global),
    /// A storage (from a persistent id).
    Storage(StorageRef),
    /// A tensor.
    Tensor(TensorRef),
}

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleError {
    /// A global outside the whitelist.
    Forbidden {
        /// Module.
        module: String,
        /// Name.
        name: String,
    },
    /// Anything else: truncated, unknown opcode, wrong types.
    Malformed(String),
}

type Res<T> = std::result::Result<T, PickleError>;

fn malformed<T>(msg: impl Into<String>) -> Res<T> {
    Err(PickleError::Malformed(msg.into()))
}

const MAX_STACK: usize = 1 << 20;

/// Deepest nesting of containers a pickle may build (a state dict nests
/// three or four levels; Python's own recursion limit is 1,000).
pub const MAX_DEPTH: u32 = 1_000;

/// Most bytes (counted as [`Value`] nodes plus their string payloads) the
/// memo may copy while decoding one pickle: a state dict copies a few
/// globals, strings and tensors per entry, megabytes at most.
pub const MAX_COPIED: usize = 256 << 20;

/// A stack entry: a value carries its nesting depth (0 for a scalar, one more
/// than its deepest child for a container), so depth is checked in O(1).
enum Item {
    Mark,
    V(Value, u32),
}

fn leaf(v: Value) -> Item {
    Item::V(v, 0)
}

/// The depth of a container whose deepest child has depth `child`.
fn nest(child: u32) -> Res<u32> {
    if child >= MAX_DEPTH {
        return malformed(format!(
            "containers nested deeper than {MAX_DEPTH} levels (a crafted file?)"
        ));
    }
    Ok(child + 1)
}

/// Approximate heap bytes of a value: what copying it costs.
fn weight(v: &Value) -> usize {
    let node = std::mem::size_of::<Value>();
    node + match v {
        Value::BigInt(b) | Value::Bytes(b) => b.len(),
        Value::Str(s) => s.len(),
        Value::Tuple(xs) | Value::List(xs) => xs.iter().map(weight).sum(),
        Value::Dict(kv) => kv.iter().map(|(k, v)| weight(k) + weight(v)).sum(),
        Value::Storage(st) => st.key.len(),
        Value::Tensor(t) => t.storage.key.len() + 8 * (t.size.len() + t.stride.len()),
        Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Global(_) => 0,
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.data.len() - self.pos < n {
            return malformed(format!(
                "pickle truncated at byte {} (wanted {n} more bytes)",
                self.pos
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Res<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Res<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Res<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Res<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return malformed("pickle truncated inside a GLOBAL line");
        };
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).or_else(|_| malformed("GLOBAL line is not UTF-8"))
    }
    fn utf8(&mut self, n: usize) -> Res<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).or_else(|_| malformed("string is not UTF-8"))
    }
}

fn resolve_global(module: &str, name: &str) -> Res<Global> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        // A type tag (never called); old files may name the CUDA classes.
        ("torch" | "torch.cuda", n) => StorageDtype::from_class(n).map(Global::Storage),
        _ => None,
    };
    g.ok_or_else(|| PickleError::Forbidden {
        module: module.to_string(),
        name: name.to_string(),
    })
}

fn as_int(v: &Value, what: &str) -> Res<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        other => malformed(format!(
            "{what}: expected an integer, got {}",
            kind_name(other)
        )),
    }
}

fn as_int_tuple(v: &Value, what: &str) -> Res<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|i| as_int(i, what)).collect(),
        other => malformed(format!(
            "{what}: expected a tuple of integers, got {}",
            kind_name(other)
        )),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::BigInt(_) => "int (wider than 64 bits)",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(_) => "global",
        Value::Storage(_) => "storage",
        Value::Tensor(_) => "tensor",
    }
}

/// Text of a key-like value: a string, a Python 2 byte string, or an integer.
fn key_text(v: &Value, what: &str) -> Res<String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        Value::Bytes(b) => {
            String::from_utf8(b.clone()).or_else(|_| malformed(format!("{what} is not UTF-8")))
        }
        Value::Int(i) => Ok(i.to_string()),
        other => malformed(format!("{what}: unexpected {}", kind_name(other))),
    }
}

fn as_count(v: &Value, what: &str) -> Res<u64> {
    let n = as_int(v, what)?;
    u64::try_from(n).or_else(|_| malformed(format!("negative {what} ({n})")))
}

fn persistent_load(pid: Value) -> Res<Value> {
    let Value::Tuple(items) = pid else {
        return malformed(format!(
            "persistent id: expected a tuple, got {}",
            kind_name(&pid)
        ));
    };
    let (tag, dtype, key, numel, view) =
        match items.as_slice() {
            [tag, Value::Global(Global::Storage(dtype)), key, _location, numel] => {
                (tag, dtype, key, numel, &Value::None)
            }
            [tag, Value::Global(Global::Storage(dtype)), key, _location, numel, view] => {
                (tag, dtype, key, numel, view)
            }
            _ => return malformed(
                "persistent id is not ('storage', torch.<X>Storage, key, location, numel[, view])",
            ),
        };
    if key_text(tag, "persistent id tag")? != "storage" {
        return malformed("persistent id is not a ('storage', ...) tuple");
    }
    let key = key_text(key, "storage key")?;
    let numel = as_count(numel, "storage numel")?;
    let view = match view {
        Value::None => None,
        Value::Tuple(v) => match v.as_slice() {
            [vkey, offset, size] => Some(StorageView {
                key: key_text(vkey, "storage view key")?,
                offset: as_count(offset, "storage view offset")?,
                numel: as_count(size, "storage view size")?,
            }),
            _ => return malformed("storage view metadata is not (key, offset, size)"),
        },
        other => {
            return malformed(format!(
                "storage view metadata: unexpected {}",
                kind_name(other)
            ))
        }
    };
    Ok(Value::Storage(StorageRef {
        dtype: *dtype,
        key,
        numel,
        view,
    }))
}

fn call(func: Global, args: Value) -> Res<Value> {
    let Value::Tuple(args) = args else {
        return malformed(format!(
            "REDUCE arguments: expected a tuple, got {}",
            kind_name(&args)
        ));
    };
    match func {
        Global::OrderedDict => {
            if args.is_empty() {
                Ok(Value::Dict(Vec::new()))
            } else {
                malformed("OrderedDict called with arguments")
            }
        }
        Global::RebuildTensorV2 | Global::RebuildTensor => {
            let fname = if func == Global::RebuildTensor {
                "_rebuild_tensor"
            } else {
                "_rebuild_tensor_v2"
            };
            if args.len() < 4 {
                return malformed(format!(
                    "{fname} needs (storage, offset, size, stride, ...)"
                ));
            }
            let Value::Storage(storage) = &args[0] else {
                return malformed(format!(
                    "{fname}: first argument is a {}",
                    kind_name(&args[0])
                ));
            };
            let offset = as_int(&args[1], "storage offset")?;
            let size = as_int_tuple(&args[2], "tensor size")?;
            let stride = as_int_tuple(&args[3], "tensor stride")?;
            if size.len() != stride.len() {
                return malformed("tensor size and stride have different lengths");
            }
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset,
                size,
                stride,
            }))
        }
        Global::RebuildParameter => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => malformed("_rebuild_parameter: first argument is not a tensor"),
        },
        Global::Storage(_) => malformed("a storage class is called directly (not supported)"),
    }
}

/// Decodes one pickle (the first of `data`; bytes after its `STOP` are
/// ignored). Never executes anything; refuses any global outside the
/// whitelist.
pub fn parse(data: &[u8]) -> Res<Value> {
    parse_at(data, 0).map(|p| p.value)
}

/// One pickle decoded by [`parse_at`].
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The unpickled value.
    pub value: Value,
    /// Offset of the first byte after the pickle's `STOP` opcode: where the
    /// next pickle (or raw data) starts.
    pub end: usize,
    /// Every storage the pickle's persistent ids named, once per key, in
    /// first-seen order (also those outside the part of the value a caller
    /// keeps, e.g. an optimizer state next to a state dict).
    pub storages: Vec<StorageRef>,
}

/// Decodes the pickle that starts at byte `start` of `data` and reports where
/// it stopped ([`Parsed::end`]). Byte offsets in errors count from the start
/// of `data`. A storage key named twice with different types or sizes is
/// malformed. Never executes anything; refuses any global outside the
/// whitelist.
pub fn parse_at(data: &[u8], start: usize) -> Res<Parsed> {
    if start > data.len() {
        return malformed(format!(
            "pickle starts at byte {start}, past the end of the data ({} bytes)",
            data.len()
        ));
    }
    let mut r = Reader { data, pos: start };
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<u32, (Value, u32)> = HashMap::new();
    let mut copied = 0usize;
    let mut storages: Vec<StorageRef> = Vec::new();
    let mut storage_index: HashMap<String, usize> = HashMap::new();

    fn pop_d(stack: &mut Vec<Item>) -> Res<(Value, u32)> {
        match stack.pop() {
            Some(Item::V(v, d)) => Ok((v, d)),
            Some(Item::Mark) => malformed("unexpected MARK on the stack"),
            None => malformed("pickle stack underflow"),
        }
    }
    fn pop(stack: &mut Vec<Item>) -> Res<Value> {
        pop_d(stack).map(|(v, _)| v)
    }
    /// The values above the topmost MARK, and the deepest one's depth.
    fn pop_mark(stack: &mut Vec<Item>) -> Res<(Vec<Value>, u32)> {
        let Some(m) = stack.iter().rposition(|i| matches!(i, Item::Mark)) else {
            return malformed("no MARK on the stack");
        };
        let items = stack.split_off(m + 1);
        stack.pop();
        let mut deepest = 0;
        let values = items
            .into_iter()
            .filter_map(|i| match i {
                Item::V(v, d) => {
                    deepest = deepest.max(d);
                    Some(v)
                }
                Item::Mark => None,
            })
            .collect();
        Ok((values, deepest))
    }
    fn top(stack: &mut [Item]) -> Res<(&mut Value, &mut u32)> {
        match stack.last_mut() {
            Some(Item::V(v, d)) => Ok((v, d)),
            _ => malformed("expected a value on top of the stack"),
        }
    }
    /// Copies a value for the memo or `DUP`, within the [`MAX_COPIED`] budget.
    fn copy(v: &Value, depth: u32, copied: &mut usize) -> Res<(Value, u32)> {
        *copied = copied.saturating_add(weight(v));
        if *copied > MAX_COPIED {
            return malformed(format!(
                "the pickle copies more than {} MiB through its memo (a crafted file?)",
                MAX_COPIED >> 20
            ));
        }
        Ok((v.clone(), depth))
    }
    /// Adds `items` (of depth at most `child`) to the container on top.
    fn extend_top(
        stack: &mut [Item],
        items: Vec<Value>,
        child: u32,
        add: fn(&mut Value, Vec<Value>) -> Res<()>,
    ) -> Res<()> {
        let (target, depth) = top(stack)?;
        add(target, items)?;
        *depth = (*depth).max(nest(child)?);
        Ok(())
    }
    fn set_items(target: &mut Value, items: Vec<Value>) -> Res<()> {
        let Value::Dict(d) = target else {
            return malformed(format!("SETITEMS on a {}", kind_name(target)));
        };
        if !items.len().is_multiple_of(2) {
            return malformed("SETITEMS with an odd number of items");
        }
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }
    fn append(target: &mut Value, items: Vec<Value>) -> Res<()> {
        let Value::List(l) = target else {
            return malformed(format!("APPENDS on a {}", kind_name(target)));
        };
        l.extend(items);
        Ok(())
    }

    loop {
        if stack.len() > MAX_STACK {
            return malformed("pickle stack too deep");
        }
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return malformed(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                r.u64()?; // FRAME: length hint only
            }
            b'.' => {
                let value = pop(&mut stack)?;
                return Ok(Parsed {
                    value,
                    end: r.pos,
                    storages,
                });
            }
            b'(' => stack.push(Item::Mark),
            b'}' => stack.push(Item::V(Value::Dict(Vec::new()), 1)),
            b']' => stack.push(Item::V(Value::List(Vec::new()), 1)),
            b')' => stack.push(Item::V(Value::Tuple(Vec::new()), 1)),
            b't' => {
                let (items, d) = pop_mark(&mut stack)?;
                stack.push(Item::V(Value::Tuple(items), nest(d)?));
            }
            b'l' => {
                let (items, d) = pop_mark(&mut stack)?;
                stack.push(Item::V(Value::List(items), nest(d)?));
            }
            b'd' => {
                let (items, d) = pop_mark(&mut stack)?;
                let mut dict = Value::Dict(Vec::new());
                set_items(&mut dict, items)?;
                stack.push(Item::V(dict, nest(d)?));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                let mut deepest = 0;
                for _ in 0..n {
                    let (v, d) = pop_d(&mut stack)?;
                    deepest = deepest.max(d);
                    items.push(v);
                }
                items.reverse();
                stack.push(Item::V(Value::Tuple(items), nest(deepest)?));
            }
            b'J' => {
                let v = r.u32()? as i32;
                stack.push(leaf(Value::Int(i64::from(v))));
            }
            b'K' => {
                let v = r.u8()?;
                stack.push(leaf(Value::Int(i64::from(v))));
            }
            b'M' => {
                let v = r.u16()?;
                stack.push(leaf(Value::Int(i64::from(v))));
            }
            0x8a => {
                let n = usize::from(r.u8()?);
                let b = r.take(n)?;
                stack.push(leaf(long1(b)));
            }
            b'G' => {
                let b = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                stack.push(leaf(Value::Float(f64::from_be_bytes(a))));
            }
            b'N' => stack.push(leaf(Value::None)),
            0x88 => stack.push(leaf(Value::Bool(true))),
            0x89 => stack.push(leaf(Value::Bool(false))),
            b'X' => {
                let n = r.u32()? as usize;
                let s = r.utf8(n)?;
                stack.push(leaf(Value::Str(s)));
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                let s = r.utf8(n)?;
                stack.push(leaf(Value::Str(s)));
            }
            0x8d => {
                let n = usize::try_from(r.u64()?).or_else(|_| malformed("string too long"))?;
                let s = r.utf8(n)?;
                stack.push(leaf(Value::Str(s)));
            }
            b'B' => {
                let n = r.u32()? as usize;
                let b = r.take(n)?.to_vec();
                stack.push(leaf(Value::Bytes(b)));
            }
            b'C' => {
                let n = usize::from(r.u8()?);
                let b = r.take(n)?.to_vec();
                stack.push(leaf(Value::Bytes(b)));
            }
            // Python 2 `str`: text when it is UTF-8, as torch.load decodes it.
            b'T' | b'U' => {
                let n = if op == b'T' {
                    r.u32()? as usize
                } else {
                    usize::from(r.u8()?)
                };
                let b = r.take(n)?.to_vec();
                stack.push(leaf(match String::from_utf8(b) {
                    Ok(s) => Value::Str(s),
                    Err(e) => Value::Bytes(e.into_bytes()),
                }));
            }
            b'c' => {
                let module = r.line()?.to_string();
                let name = r.line()?.to_string();
                stack.push(leaf(Value::Global(resolve_global(&module, &name)?)));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return malformed("STACK_GLOBAL on non-strings");
                };
                stack.push(leaf(Value::Global(resolve_global(&module, &name)?)));
            }
            b'R' => {
                let (args, depth) = pop_d(&mut stack)?;
                let func = pop(&mut stack)?;
                let Value::Global(g) = func else {
                    return malformed(format!("REDUCE on a {}", kind_name(&func)));
                };
                // The result holds at most what its arguments held.
                stack.push(Item::V(call(g, args)?, depth));
            }
            b'b' => {
                // BUILD: sets object state (e.g. the OrderedDict's `_metadata`); ignored.
                let _state = pop(&mut stack)?;
                top(&mut stack)?;
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                let v = persistent_load(pid)?;
                if let Value::Storage(st) = &v {
                    match storage_index.get(&st.key) {
                        Some(&i) => {
                            let first = &storages[i];
                            if first.dtype != st.dtype || first.numel != st.numel {
                                return malformed(format!(
                                    "storage {} is named as {} elements of {:?} and as {} elements of {:?}",
                                    st.key, first.numel, first.dtype, st.numel, st.dtype
                                ));
                            }
                        }
                        None => {
                            storage_index.insert(st.key.clone(), storages.len());
                            storages.push(StorageRef {
                                view: None,
                                ..st.clone()
                            });
                        }
                    }
                }
                stack.push(leaf(v));
            }
            b'q' | b'r' | 0x94 => {
                let k = match op {
                    b'q' => u32::from(r.u8()?),
                    b'r' => r.u32()?,
                    _ => u32::try_from(memo.len()).or_else(|_| malformed("memo overflow"))?,
                };
                let (v, d) = top(&mut stack)?;
                let entry = copy(v, *d, &mut copied)?;
                memo.insert(k, entry);
            }
            b'h' | b'j' => {
                let k = if op == b'h' { u32::from(r.u8()?) } else { r.u32()? };
                let Some((v, d)) = memo.get(&k) else {
                    return malformed(format!("memo key {k} is not defined"));
                };
                let (v, d) = copy(v, *d, &mut copied)?;
                stack.push(Item::V(v, d));
            }
            b's' => {
                let (v, dv) = pop_d(&mut stack)?;
                let (k, dk) = pop_d(&mut stack)?;
                extend_top(&mut stack, vec![k, v], dk.max(dv), set_items)?;
            }
            b'u' => {
                let (items, d) = pop_mark(&mut stack)?;
                extend_top(&mut stack, items, d, set_items)?;
            }
            b'a' => {
                let (v, d) = pop_d(&mut stack)?;
                extend_top(&mut stack, vec![v], d, append)?;
            }
            b'e' => {
                let (items, d) = pop_mark(&mut stack)?;
                extend_top(&mut stack, items, d, append)?;
            }
            b'0' => {
                stack.pop().ok_or_else(|| PickleError::Malformed("POP on an empty stack".into()))?;
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'2' => {
                let (v, d) = top(&mut stack)?;
                let (v, d) = copy(v, *d, &mut copied)?;
                stack.push(Item::V(v, d));
            }
            other => {
                return malformed(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {} (not something torch.save writes for a state dict)",
                    r.pos - 1
                ))
            }
        }
    }
}

/// A `LONG1` payload: an `Int` when it fits i64, else a `BigInt`.
fn long1(b: &[u8]) -> Value {
    let negative = b.last().is_some_and(|&x| x & 0x80 != 0);
    let fill = if negative { 0xffu8 } else { 0 };
    // Bytes past the eighth that only repeat the sign still fit.
    let fits =
        b.len() <= 8 || (b[8..].iter().all(|&x| x == fill) && (b[7] & 0x80 != 0) == negative);
    if !fits {
        return Value::BigInt(b.to_vec());
    }
    let mut a = [fill; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    Value::Int(i64::from_le_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_global_is_refused() {
        let p = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        assert_eq!(
            parse(p),
            Err(PickleError::Forbidden {
                module: "os".into(),
                name: "system".into()
            })
        );
    }

    #[test]
    fn truncated_is_malformed() {
        let p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x05\x00\x00";
        assert!(matches!(parse(p), Err(PickleError::Malformed(_))));
    }

    #[test]
    fn small_values() {
        // pickle.dumps({'a': (1, -2, 300, 70000, True, None, 1.5, [b'x'])}, protocol=2)
        let p = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00\x88NG?\xf8\x00\x00\x00\x00\x00\x00]q\x02C\x01xq\x03atq\x04s.";
        let v = parse(p).unwrap();
        let want = Value::Dict(vec![(
            Value::Str("a".into()),
            Value::Tuple(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Int(300),
                Value::Int(70000),
                Value::Bool(true),
                Value::None,
                Value::Float(1.5),
                Value::List(vec![Value::Bytes(b"x".to_vec())]),
            ]),
        )]);
        assert_eq!(v, want);
    }

    #[test]
    fn parse_at_walks_concatenated_pickles() {
        // The legacy header: magic number (wider than i64), protocol version.
        let p = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.";
        let a = parse_at(p, 0).unwrap();
        assert_eq!(a.end, 15);
        let want = vec![0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        assert_eq!(a.value, Value::BigInt(want));
        let b = parse_at(p, a.end).unwrap();
        assert_eq!((b.value, b.end), (Value::Int(1001), p.len()));
        assert!(
            matches!(parse_at(p, p.len()), Err(PickleError::Malformed(m)) if m.contains("truncated at byte 21"))
        );
        assert!(matches!(
            parse_at(p, p.len() + 1),
            Err(PickleError::Malformed(_))
        ));
        // parse still reads the first pickle of a buffer.
        assert_eq!(parse(p).unwrap(), a.value);
    }

    #[test]
    fn nesting_is_capped() {
        let nested = |levels: usize| {
            let mut p = b"\x80\x02N".to_vec();
            p.extend(std::iter::repeat_n(0x85u8, levels)); // TUPLE1
            p.push(b'.');
            p
        };
        let mut v = parse(&nested(MAX_DEPTH as usize)).unwrap();
        let mut levels = 0;
        while let Value::Tuple(mut xs) = v {
            levels += 1;
            v = xs.pop().unwrap();
        }
        assert_eq!((levels, v), (MAX_DEPTH, Value::None));
        // A million levels from a megabyte: refused before it could overflow
        // the stack when dropped.
        let err = parse(&nested(1 << 20)).unwrap_err();
        assert!(
            matches!(&err, PickleError::Malformed(m) if m.contains("nested deeper than 1000")),
            "{err:?}"
        );
        // Depth also grows through APPENDS into a list: [[[...]]].
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b']', MAX_DEPTH as usize + 1));
        p.extend(std::iter::repeat_n(b'a', MAX_DEPTH as usize));
        p.push(b'.');
        assert!(matches!(parse(&p), Err(PickleError::Malformed(m)) if m.contains("nested deeper")));
    }

    #[test]
    fn memo_copies_are_capped() {
        // x = []; then 64 times: x = [x, x] through BINGET: 2^64 values.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..64 {
            p.extend_from_slice(b"0(h\x00h\x00lq\x00");
        }
        p.push(b'.');
        let err = parse(&p).unwrap_err();
        assert!(
            matches!(&err, PickleError::Malformed(m) if m.contains("copies more than 256 MiB")),
            "{err:?}"
        );
        // Ten doublings are fine and come out right.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..10 {
            p.extend_from_slice(b"0(h\x00h\x00lq\x00");
        }
        p.push(b'.');
        let mut v = parse(&p).unwrap();
        let mut levels = 0;
        while let Value::List(xs) = v {
            if xs.is_empty() {
                break;
            }
            assert_eq!(xs.len(), 2);
            assert_eq!(xs[0], xs[1]);
            levels += 1;
            v = xs.into_iter().next().unwrap();
        }
        assert_eq!(levels, 10);
    }

    #[test]
    fn long1_widths() {
        let one = |b: &[u8]| {
            let mut p = vec![0x80, 2, 0x8a, b.len() as u8];
            p.extend(b);
            p.push(b'.');
            parse(&p).unwrap()
        };
        assert_eq!(one(&[]), Value::Int(0));
        assert_eq!(one(&[0xff]), Value::Int(-1));
        assert_eq!(one(&[0xff; 9]), Value::Int(-1));
        assert_eq!(
            one(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0]),
            Value::Int(i64::MAX)
        );
        let two63 = [0, 0, 0, 0, 0, 0, 0, 0x80, 0];
        assert_eq!(one(&two63), Value::BigInt(two63.to_vec()));
    }

    #[test]
    fn python2_strings_are_text() {
        let p = b"\x80\x02(U\x02abT\x01\x00\x00\x00cU\x01\xffC\x01dt.";
        assert_eq!(
            parse(p).unwrap(),
            Value::Tuple(vec![
                Value::Str("ab".into()),
                Value::Str("c".into()),
                Value::Bytes(vec![0xff]),
                Value::Bytes(b"d".to_vec()),
            ])
        );
    }

    #[test]
    fn legacy_persistent_ids_and_the_storage_table() {
        // [t(storage '1' viewed as ('2', 1, 3)), t(storage '1'), t(storage '5')]
        let pid = |key: &[u8], view: &[u8]| {
            let mut b = b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nHalfStorage\n".to_vec();
            b.extend(key);
            b.extend(b"X\x03\x00\x00\x00cpuK\x06");
            b.extend(view);
            b.extend(b"tQK\x00K\x01\x85K\x01\x85tR");
            b
        };
        let mut p = b"\x80\x02(".to_vec();
        p.extend(pid(
            b"X\x01\x00\x00\x001",
            b"(X\x01\x00\x00\x002K\x01K\x03t",
        ));
        p.extend(pid(b"X\x01\x00\x00\x001", b"N"));
        p.extend(pid(b"K\x05", b"N"));
        p.extend(b"l.");
        let got = parse_at(&p, 0).unwrap();
        let root = |key: &str| StorageRef {
            dtype: StorageDtype::F16,
            key: key.into(),
            numel: 6,
            view: None,
        };
        assert_eq!(got.storages, vec![root("1"), root("5")]);
        let Value::List(ts) = &got.value else {
            panic!("{:?}", got.value)
        };
        let Value::Tensor(t0) = &ts[0] else {
            panic!("{:?}", ts[0])
        };
        assert_eq!(
            t0.storage.view,
            Some(StorageView {
                key: "2".into(),
                offset: 1,
                numel: 3
            })
        );
        // The same key with another size is malformed.
        let from = b"cpuK\x06N";
        let at = p.windows(from.len()).position(|w| w == from).unwrap();
        p[at + 4] = 7;
        let e = parse(&p).unwrap_err();
        assert!(matches!(e, PickleError::Malformed(m) if m.contains("storage 1 is named as 6")));
    }
}
