//! A small, safe reader for the pickles `torch.save` writes.
//!
//! Only the opcodes `torch.save` (pickle protocols 2 to 4) emits are
//! understood, and only a whitelist of globals is accepted: nothing from the
//! file is ever executed. `REDUCE` is interpreted for the whitelisted callables
//! only (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter`); storages are the persistent ids
//! `('storage', torch.<Dtype>Storage, key, location, numel)`.
//!
//! Limitation (documented, harmless for state dicts): the memo stores copies,
//! so a container mutated after it was memoised is seen as it was when
//! memoised by a later `BINGET`.

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

/// A storage reference: `data/<key>` in the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Element type.
    pub dtype: StorageDtype,
    /// The record name inside the archive's `data/` folder.
    pub key: String,
    /// Number of elements the pickle claims.
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

enum Item {
    Mark,
    V(Value),
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
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", n) => StorageDtype::from_class(n).map(Global::Storage),
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

fn persistent_load(pid: Value) -> Res<Value> {
    let Value::Tuple(items) = pid else {
        return malformed(format!(
            "persistent id: expected a tuple, got {}",
            kind_name(&pid)
        ));
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), key, _location, numel]
            if tag == "storage" =>
        {
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                other => return malformed(format!("storage key: unexpected {}", kind_name(other))),
            };
            let numel = as_int(numel, "storage numel")?;
            let numel = u64::try_from(numel).or_else(|_| malformed("negative storage size"))?;
            Ok(Value::Storage(StorageRef {
                dtype: *dtype,
                key,
                numel,
            }))
        }
        _ => malformed("persistent id is not ('storage', torch.<X>Storage, key, location, numel)"),
    }
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
        Global::RebuildTensorV2 => {
            if args.len() < 4 {
                return malformed("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
            }
            let Value::Storage(storage) = &args[0] else {
                return malformed(format!(
                    "_rebuild_tensor_v2: first argument is a {}",
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

/// Decodes one pickle. Never executes anything; refuses any global outside the
/// whitelist.
pub fn parse(data: &[u8]) -> Res<Value> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();

    fn pop(stack: &mut Vec<Item>) -> Res<Value> {
        match stack.pop() {
            Some(Item::V(v)) => Ok(v),
            Some(Item::Mark) => malformed("unexpected MARK on the stack"),
            None => malformed("pickle stack underflow"),
        }
    }
    fn pop_mark(stack: &mut Vec<Item>) -> Res<Vec<Value>> {
        let Some(m) = stack.iter().rposition(|i| matches!(i, Item::Mark)) else {
            return malformed("no MARK on the stack");
        };
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items
            .into_iter()
            .filter_map(|i| if let Item::V(v) = i { Some(v) } else { None })
            .collect())
    }
    fn top(stack: &mut [Item]) -> Res<&mut Value> {
        match stack.last_mut() {
            Some(Item::V(v)) => Ok(v),
            _ => malformed("expected a value on top of the stack"),
        }
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
            b'.' => return pop(&mut stack),
            b'(' => stack.push(Item::Mark),
            b'}' => stack.push(Item::V(Value::Dict(Vec::new()))),
            b']' => stack.push(Item::V(Value::List(Vec::new()))),
            b')' => stack.push(Item::V(Value::Tuple(Vec::new()))),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Item::V(Value::Tuple(items)));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Item::V(Value::List(items)));
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                let mut d = Value::Dict(Vec::new());
                set_items(&mut d, items)?;
                stack.push(Item::V(d));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(pop(&mut stack)?);
                }
                items.reverse();
                stack.push(Item::V(Value::Tuple(items)));
            }
            b'J' => {
                let v = r.u32()? as i32;
                stack.push(Item::V(Value::Int(i64::from(v))));
            }
            b'K' => {
                let v = r.u8()?;
                stack.push(Item::V(Value::Int(i64::from(v))));
            }
            b'M' => {
                let v = r.u16()?;
                stack.push(Item::V(Value::Int(i64::from(v))));
            }
            0x8a => {
                let n = usize::from(r.u8()?);
                let b = r.take(n)?;
                if n > 8 {
                    return malformed("LONG1 integer wider than 64 bits");
                }
                let mut a = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                a[..n].copy_from_slice(b);
                stack.push(Item::V(Value::Int(i64::from_le_bytes(a))));
            }
            b'G' => {
                let b = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                stack.push(Item::V(Value::Float(f64::from_be_bytes(a))));
            }
            b'N' => stack.push(Item::V(Value::None)),
            0x88 => stack.push(Item::V(Value::Bool(true))),
            0x89 => stack.push(Item::V(Value::Bool(false))),
            b'X' => {
                let n = r.u32()? as usize;
                let s = r.utf8(n)?;
                stack.push(Item::V(Value::Str(s)));
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                let s = r.utf8(n)?;
                stack.push(Item::V(Value::Str(s)));
            }
            0x8d => {
                let n = usize::try_from(r.u64()?).or_else(|_| malformed("string too long"))?;
                let s = r.utf8(n)?;
                stack.push(Item::V(Value::Str(s)));
            }
            b'T' | b'B' => {
                let n = r.u32()? as usize;
                let b = r.take(n)?.to_vec();
                stack.push(Item::V(Value::Bytes(b)));
            }
            b'U' | b'C' => {
                let n = usize::from(r.u8()?);
                let b = r.take(n)?.to_vec();
                stack.push(Item::V(Value::Bytes(b)));
            }
            b'c' => {
                let module = r.line()?.to_string();
                let name = r.line()?.to_string();
                stack.push(Item::V(Value::Global(resolve_global(&module, &name)?)));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return malformed("STACK_GLOBAL on non-strings");
                };
                stack.push(Item::V(Value::Global(resolve_global(&module, &name)?)));
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                let Value::Global(g) = func else {
                    return malformed(format!("REDUCE on a {}", kind_name(&func)));
                };
                stack.push(Item::V(call(g, args)?));
            }
            b'b' => {
                // BUILD: sets object state (e.g. the OrderedDict's `_metadata`); ignored.
                let _state = pop(&mut stack)?;
                top(&mut stack)?;
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(Item::V(persistent_load(pid)?));
            }
            b'q' => {
                let k = u32::from(r.u8()?);
                memo.insert(k, top(&mut stack)?.clone());
            }
            b'r' => {
                let k = r.u32()?;
                memo.insert(k, top(&mut stack)?.clone());
            }
            0x94 => {
                let k = u32::try_from(memo.len()).or_else(|_| malformed("memo overflow"))?;
                memo.insert(k, top(&mut stack)?.clone());
            }
            b'h' | b'j' => {
                let k = if op == b'h' { u32::from(r.u8()?) } else { r.u32()? };
                let Some(v) = memo.get(&k) else {
                    return malformed(format!("memo key {k} is not defined"));
                };
                stack.push(Item::V(v.clone()));
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                set_items(top(&mut stack)?, vec![k, v])?;
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                set_items(top(&mut stack)?, items)?;
            }
            b'a' => {
                let v = pop(&mut stack)?;
                append(top(&mut stack)?, vec![v])?;
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                append(top(&mut stack)?, items)?;
            }
            b'0' => {
                stack.pop().ok_or_else(|| PickleError::Malformed("POP on an empty stack".into()))?;
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'2' => {
                let v = top(&mut stack)?.clone();
                stack.push(Item::V(v));
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
}
