//! PyTorch checkpoints read without Python and without running their pickles.
//!
//! `torch.save` writes two formats: the zip archive of PyTorch ≥ 1.6 (`data.pkl` plus one entry
//! per storage) and the legacy format before it (five pickles in a row — magic number, protocol
//! version, system info, the object, the storage keys — then each storage's raw bytes, preceded
//! by its element count). [`read_state_dict`] reads both. The pickles run on a small stack
//! machine that knows the opcodes a checkpoint uses (protocols 2–5) and calls nothing: the
//! globals it recognizes (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `_rebuild_parameter`, the `torch.*Storage` types) are interpreted by this module, any other
//! global becomes an inert [`Value::Object`], so a hostile file can at worst fail to load.
//!
//! The state dict is found through the wrappers training scripts write (`{"state_dict": ...,
//! "epoch": 90}`, or under `model`, `net`, `model_state_dict`), and a `module.` prefix that
//! `DataParallel` adds to every key is removed ([`unwrap_state_dict`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use candle_core::{DType, Device, Result, Tensor};

/// Keys under which training scripts store the state dict beside epochs and optimizer state.
pub const WRAPPER_KEYS: [&str; 4] = ["state_dict", "model", "net", "model_state_dict"];

/// Declares [`Op`]: the pickle opcodes a PyTorch checkpoint uses, named as Python's
/// `pickletools` names them, with their bytes.
macro_rules! opcodes {
    ($($name:ident = $byte:expr, $doc:literal;)*) => {
        /// A pickle opcode this reader runs (anything else is an error naming its byte).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Op {
            $(#[doc = $doc] $name,)*
        }

        impl Op {
            fn from_byte(byte: u8) -> Option<Self> {
                match byte {
                    $(b if b == $byte => Some(Op::$name),)*
                    _ => None,
                }
            }
        }
    };
}

opcodes! {
    Proto = 0x80, "PROTO: the protocol version (skipped)";
    Frame = 0x95, "FRAME: a frame's length (skipped)";
    Stop = b'.', "STOP: the pickle's value is the top of the stack";
    Mark = b'(', "MARK";
    EmptyDict = b'}', "EMPTY_DICT";
    EmptyList = b']', "EMPTY_LIST";
    EmptyTuple = b')', "EMPTY_TUPLE";
    None = b'N', "NONE";
    NewTrue = 0x88, "NEWTRUE";
    NewFalse = 0x89, "NEWFALSE";
    BinInt = b'J', "BININT: 4-byte signed";
    BinInt1 = b'K', "BININT1: 1-byte unsigned";
    BinInt2 = b'M', "BININT2: 2-byte unsigned";
    Long1 = 0x8a, "LONG1: a little-endian two's-complement integer of a 1-byte length";
    Long4 = 0x8b, "LONG4: the same with a 4-byte length";
    BinFloat = b'G', "BINFLOAT: 8-byte big-endian";
    BinUnicode = b'X', "BINUNICODE: UTF-8 of a 4-byte length";
    ShortBinUnicode = 0x8c, "SHORT_BINUNICODE: of a 1-byte length";
    BinUnicode8 = 0x8d, "BINUNICODE8: of an 8-byte length";
    BinString = b'T', "BINSTRING (protocol 2's str)";
    ShortBinString = b'U', "SHORT_BINSTRING";
    BinBytes = b'B', "BINBYTES";
    ShortBinBytes = b'C', "SHORT_BINBYTES";
    BinBytes8 = 0x8e, "BINBYTES8";
    Tuple = b't', "TUPLE: everything above the mark";
    Tuple1 = 0x85, "TUPLE1";
    Tuple2 = 0x86, "TUPLE2";
    Tuple3 = 0x87, "TUPLE3";
    List = b'l', "LIST: everything above the mark";
    Dict = b'd', "DICT: the pairs above the mark";
    Append = b'a', "APPEND";
    Appends = b'e', "APPENDS";
    SetItem = b's', "SETITEM";
    SetItems = b'u', "SETITEMS";
    Global = b'c', "GLOBAL: module and name as two lines";
    StackGlobal = 0x93, "STACK_GLOBAL: module and name from the stack";
    Reduce = b'R', "REDUCE: a call";
    NewObj = 0x81, "NEWOBJ";
    NewObjEx = 0x92, "NEWOBJ_EX";
    Build = b'b', "BUILD: an object's state";
    BinPersId = b'Q', "BINPERSID: a persistent id (a tensor's storage)";
    BinPut = b'q', "BINPUT: memo store, 1-byte key";
    LongBinPut = b'r', "LONG_BINPUT: 4-byte key";
    Memoize = 0x94, "MEMOIZE: memo store at the next key";
    BinGet = b'h', "BINGET: memo load, 1-byte key";
    LongBinGet = b'j', "LONG_BINGET: 4-byte key";
    Pop = b'0', "POP";
    PopMark = b'1', "POP_MARK";
    Dup = b'2', "DUP";
}

/// A value on the pickle machine's stack.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, little-endian two's complement (the legacy magic number).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A global named by the pickle (`module.name`), never imported.
    Global(String),
    /// A tensor storage: its key and element type.
    Storage(Rc<(String, DType)>),
    Tensor(Rc<TensorRef>),
    /// The result of calling or building a global this module does not interpret.
    Object(String),
    Mark,
}

/// A tensor as the pickle describes it: a view into a storage.
#[derive(Debug)]
pub struct TensorRef {
    pub storage: String,
    pub dtype: DType,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(candle_core::Error::Msg(msg.into()))
}

/// The element type of a `torch.*Storage` class.
fn storage_dtype(class: &str) -> Option<DType> {
    Some(match class.strip_prefix("torch.")? {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "ByteStorage" | "BoolStorage" => DType::U8,
        _ => return None,
    })
}

/// The pickle machine. `storages` records every storage the pickle referred to.
#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    storages: HashMap<String, DType>,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else { return err("the pickle ends in the middle of an instruction (a truncated file?)") };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else { return err("a GLOBAL without its newline") };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<String> {
        String::from_utf8(self.take(n)?.to_vec()).or_else(|_| err("a pickled string is not UTF-8"))
    }
}

impl Machine {
    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => err("the pickle pops an empty stack"),
        }
    }
    fn top(&mut self) -> Result<&mut Value> {
        match self.stack.last_mut() {
            Some(v) => Ok(v),
            None => err("the pickle reads an empty stack"),
        }
    }
    /// Everything above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(m) = self.stack.iter().rposition(|v| matches!(v, Value::Mark)) else {
            return err("the pickle has no MARK where one is needed");
        };
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }

    /// Runs one pickle from `c` to its STOP and returns the result.
    fn run(&mut self, c: &mut Cursor<'_>) -> Result<Value> {
        loop {
            let byte = c.u8()?;
            let Some(op) = Op::from_byte(byte) else {
                return err(format!(
                    "pickle opcode 0x{byte:02x} at byte {} is not one a PyTorch checkpoint uses",
                    c.pos - 1
                ));
            };
            match op {
                Op::Proto => {
                    c.u8()?;
                }
                Op::Frame => {
                    c.u64()?;
                }
                Op::Stop => return self.pop(),
                Op::Mark => self.stack.push(Value::Mark),
                Op::EmptyDict => self.stack.push(Value::Dict(Rc::default())),
                Op::EmptyList => self.stack.push(Value::List(Rc::default())),
                Op::EmptyTuple => self.stack.push(Value::Tuple(Rc::default())),
                Op::None => self.stack.push(Value::None),
                Op::NewTrue => self.stack.push(Value::Bool(true)),
                Op::NewFalse => self.stack.push(Value::Bool(false)),
                Op::BinInt => {
                    let v = c.u32()? as i32;
                    self.stack.push(Value::Int(v.into()))
                }
                Op::BinInt1 => {
                    let v = c.u8()?;
                    self.stack.push(Value::Int(v.into()))
                }
                Op::BinInt2 => {
                    let v = c.u16()?;
                    self.stack.push(Value::Int(v.into()))
                }
                Op::Long1 | Op::Long4 => {
                    let n = if op == Op::Long1 { c.u8()? as usize } else { c.u32()? as usize };
                    let b = c.take(n)?;
                    if n <= 8 {
                        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                        let mut a = [fill; 8];
                        a[..n].copy_from_slice(b);
                        self.stack.push(Value::Int(i64::from_le_bytes(a)));
                    } else {
                        self.stack.push(Value::BigInt(b.to_vec()));
                    }
                }
                Op::BinFloat => {
                    let b = c.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                Op::BinUnicode | Op::ShortBinUnicode | Op::BinUnicode8 | Op::BinString | Op::ShortBinString => {
                    let n = match op {
                        Op::BinUnicode | Op::BinString => c.u32()? as usize,
                        Op::BinUnicode8 => c.u64()? as usize,
                        _ => c.u8()? as usize,
                    };
                    let s = c.string(n)?;
                    self.stack.push(Value::Str(s));
                }
                Op::BinBytes | Op::ShortBinBytes | Op::BinBytes8 => {
                    let n = match op {
                        Op::BinBytes => c.u32()? as usize,
                        Op::BinBytes8 => c.u64()? as usize,
                        _ => c.u8()? as usize,
                    };
                    let b = c.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                Op::Tuple => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                Op::Tuple1 | Op::Tuple2 | Op::Tuple3 => {
                    let n = match op {
                        Op::Tuple1 => 1,
                        Op::Tuple2 => 2,
                        _ => 3,
                    };
                    if self.stack.len() < n {
                        return err("the pickle builds a tuple from an empty stack");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                Op::List => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))))
                }
                Op::Dict => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))))
                }
                Op::Append => {
                    let v = self.pop()?;
                    append(self.top()?, vec![v])?
                }
                Op::Appends => {
                    let items = self.pop_mark()?;
                    append(self.top()?, items)?
                }
                Op::SetItem => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    set_items(self.top()?, vec![(k, v)])?
                }
                Op::SetItems => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    set_items(self.top()?, pairs)?
                }
                Op::Global => {
                    let module = c.line()?;
                    let name = c.line()?;
                    self.stack.push(Value::Global(format!("{module}.{name}")))
                }
                Op::StackGlobal => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(format!("{m}.{n}"))),
                        _ => return err("STACK_GLOBAL without two strings"),
                    }
                }
                Op::Reduce => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.call(f, args)?;
                    self.stack.push(v)
                }
                Op::NewObj => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.call(cls, Value::Tuple(Rc::default()))?;
                    self.stack.push(v)
                }
                Op::NewObjEx => {
                    let _kwargs = self.pop()?;
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.call(cls, Value::Tuple(Rc::default()))?;
                    self.stack.push(v)
                }
                Op::Build => {
                    // BUILD: an object's state. A dict's state (OrderedDict's `_metadata`) and an
                    // opaque object's are dropped: nothing here needs them.
                    let _state = self.pop()?;
                }
                Op::BinPersId => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.stack.push(v)
                }
                Op::BinPut => {
                    let i = c.u8()?.into();
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                Op::LongBinPut => {
                    let i = c.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                Op::Memoize => {
                    let i = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                Op::BinGet | Op::LongBinGet => {
                    let i = if op == Op::BinGet { c.u8()?.into() } else { c.u32()? };
                    match self.memo.get(&i) {
                        Some(v) => self.stack.push(v.clone()),
                        None => return err(format!("the pickle refers to memo entry {i}, which it never stored")),
                    }
                }
                Op::Pop => {
                    self.pop()?;
                }
                Op::PopMark => {
                    self.pop_mark()?;
                }
                Op::Dup => {
                    let v = self.top()?.clone();
                    self.stack.push(v)
                }
            }
        }
    }

    /// A REDUCE: the few callables a state dict needs, interpreted; anything else inert.
    fn call(&mut self, f: Value, args: Value) -> Result<Value> {
        let Value::Global(name) = f else { return Ok(Value::Object("a call of a non-global".into())) };
        let args: Vec<Value> = match &args {
            Value::Tuple(t) => t.as_ref().clone(),
            _ => Vec::new(),
        };
        match name.as_str() {
            "collections.OrderedDict" | "builtins.dict" | "__builtin__.dict" => {
                let pairs = match args.first() {
                    Some(Value::List(l)) => l
                        .borrow()
                        .iter()
                        .map(|p| match p {
                            Value::Tuple(t) if t.len() == 2 => Ok((t[0].clone(), t[1].clone())),
                            _ => err("an OrderedDict built from something other than pairs"),
                        })
                        .collect::<Result<_>>()?,
                    _ => Vec::new(),
                };
                Ok(Value::Dict(Rc::new(RefCell::new(pairs))))
            }
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let (
                    Some(Value::Storage(s)),
                    Some(Value::Int(offset)),
                    Some(Value::Tuple(size)),
                    Some(Value::Tuple(stride)),
                ) = (args.first(), args.get(1), args.get(2), args.get(3))
                else {
                    return err(format!("{name} with arguments that are not (storage, offset, size, stride)"));
                };
                let ints = |t: &[Value]| -> Result<Vec<usize>> {
                    t.iter()
                        .map(|v| match v {
                            Value::Int(i) if *i >= 0 => Ok(*i as usize),
                            _ => err("a tensor size or stride that is not a non-negative integer"),
                        })
                        .collect()
                };
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage: s.0.clone(),
                    dtype: s.1,
                    offset: usize::try_from(*offset).or_else(|_| err("a negative storage offset"))?,
                    size: ints(size)?,
                    stride: ints(stride)?,
                })))
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => err(format!("{name} without a tensor")),
            },
            "_codecs.encode" => match args.first() {
                // Protocol 2 pickles bytes as _codecs.encode(text, "latin1").
                Some(Value::Str(s)) => Ok(Value::Bytes(s.chars().map(|c| c as u32 as u8).collect())),
                _ => Ok(Value::Object(name)),
            },
            _ => Ok(Value::Object(name)),
        }
    }

    /// A persistent id: `('storage', torch.FloatStorage, key, location, numel[, view])`.
    fn persistent(&mut self, pid: Value) -> Result<Value> {
        let Value::Tuple(t) = &pid else { return err("a persistent id that is not a tuple") };
        match (t.first(), t.get(1), t.get(2)) {
            (Some(Value::Str(kind)), Some(Value::Global(class)), Some(Value::Str(key))) if kind == "storage" => {
                if matches!(t.get(5), Some(v) if !matches!(v, Value::None)) {
                    return err("storage views (PyTorch before 0.4) are not supported");
                }
                let Some(dtype) = storage_dtype(class) else {
                    return err(format!("tensors of storage type {class} are not supported"));
                };
                self.storages.insert(key.clone(), dtype);
                Ok(Value::Storage(Rc::new((key.clone(), dtype))))
            }
            _ => err("a persistent id that is not a tensor storage"),
        }
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        return err("a dict built from an odd number of items");
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn append(target: &mut Value, items: Vec<Value>) -> Result<()> {
    match target {
        Value::List(l) => {
            l.borrow_mut().extend(items);
            Ok(())
        }
        Value::Object(_) => Ok(()),
        _ => err("APPEND to something that is not a list"),
    }
}

fn set_items(target: &mut Value, items: Vec<(Value, Value)>) -> Result<()> {
    match target {
        Value::Dict(d) => {
            d.borrow_mut().extend(items);
            Ok(())
        }
        Value::Object(_) => Ok(()),
        _ => err("SETITEM on something that is not a dict"),
    }
}

/// The raw bytes of every storage, by key.
type Storages = HashMap<String, Vec<u8>>;

/// Reads a `torch.save` file of either format: the pickled object and its storages.
fn read_file(path: &Path) -> Result<(Value, Storages)> {
    let what =
        |e: String| candle_core::Error::Msg(format!("{}: not a readable PyTorch checkpoint: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| what(e.to_string()))?;
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(&bytes).map_err(|e| what(e.to_string()))
    } else if bytes.starts_with(&[0x80, 0x02]) {
        read_legacy(&bytes).map_err(|e| what(e.to_string()))
    } else {
        Err(what("neither the zip format of torch.save nor its legacy format (pickle protocol 2)".into()))
    }
}

fn read_zip(bytes: &[u8]) -> Result<(Value, Storages)> {
    let zerr = |e: zip::result::ZipError| candle_core::Error::Msg(format!("invalid zip archive: {e}"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zerr)?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    let Some(pkl) = names.iter().find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1) else {
        return err("the archive has no data.pkl");
    };
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(name).map_err(zerr)?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
        Ok(out)
    };
    let data = read(pkl)?;
    let mut m = Machine::default();
    let obj = m.run(&mut Cursor { data: &data, pos: 0 })?;
    let mut storages = HashMap::new();
    for key in m.storages.keys() {
        storages.insert(key.clone(), read(&format!("{prefix}data/{key}"))?);
    }
    Ok((obj, storages))
}

/// `torch.serialization.MAGIC_NUMBER`, little-endian.
const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

fn read_legacy(bytes: &[u8]) -> Result<(Value, Storages)> {
    let mut c = Cursor { data: bytes, pos: 0 };
    let mut m = Machine::default();
    let magic = m.run(&mut c)?;
    let is_magic = match &magic {
        Value::BigInt(b) if b.len() <= 16 => {
            let mut a = [0u8; 16];
            a[..b.len()].copy_from_slice(b);
            u128::from_le_bytes(a) == LEGACY_MAGIC
        }
        _ => false,
    };
    if !is_magic {
        return err("a pickle, but not one torch.save wrote (wrong magic number)");
    }
    match m.run(&mut c)? {
        Value::Int(1001) => {}
        v => return err(format!("legacy protocol version {v:?}, expected 1001")),
    }
    if let Value::Dict(info) = m.run(&mut c)? {
        let little = info.borrow().iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Bool(b)) if k == "little_endian" => Some(*b),
            _ => None,
        });
        if little == Some(false) {
            return err("written on a big-endian machine: not supported");
        }
    }
    m.stack.clear();
    let obj = m.run(&mut c)?;
    let keys = match m.run(&mut c)? {
        Value::List(l) => l.borrow().clone(),
        _ => return err("the storage key list is missing"),
    };
    let mut storages = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else { return err("a storage key that is not a string") };
        let Some(dtype) = m.storages.get(&key) else {
            return err(format!("storage {key} is listed but no tensor uses it"));
        };
        let numel = c.u64()? as usize;
        let n = numel
            .checked_mul(dtype.size_in_bytes())
            .ok_or_else(|| candle_core::Error::Msg("storage too large".into()))?;
        storages.insert(key, c.take(n)?.to_vec());
    }
    Ok((obj, storages))
}

/// Makes a contiguous CPU tensor from a view into a storage.
fn materialize(t: &TensorRef, storages: &Storages) -> Result<Tensor> {
    let Some(data) = storages.get(&t.storage) else { return err(format!("storage {} is missing", t.storage)) };
    let es = t.dtype.size_in_bytes();
    if t.size.len() != t.stride.len() {
        return err("a tensor whose size and stride differ in length");
    }
    let numel: usize = t.size.iter().product();
    let mut out = Vec::with_capacity(numel * es);
    if numel > 0 {
        let last = t.offset + t.size.iter().zip(&t.stride).map(|(s, st)| (s - 1) * st).sum::<usize>();
        if (last + 1) * es > data.len() {
            return err(format!("a tensor reaches past the end of storage {}", t.storage));
        }
        let mut idx = vec![0usize; t.size.len()];
        for _ in 0..numel {
            let e = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            out.extend_from_slice(&data[e * es..(e + 1) * es]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    Tensor::from_raw_buffer(&out, t.dtype, &t.size, &Device::Cpu)
}

/// The tensors of a string-keyed dict, or `None` if it holds none.
fn tensors_of(dict: &[(Value, Value)], storages: &Storages) -> Result<Option<Vec<(String, Tensor)>>> {
    let mut out = Vec::new();
    for (k, v) in dict {
        if let (Value::Str(k), Value::Tensor(t)) = (k, v) {
            out.push((k.clone(), materialize(t, storages)?));
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Reads the state dict of a `torch.save` file (either format), through a wrapper dict, with a
/// `module.` prefix removed; see the module docs. Tensors are on the CPU, in their saved dtype.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let (obj, storages) = read_file(path)?;
    let Value::Dict(top) = obj else {
        return err(format!("{}: the checkpoint holds no dict of tensors (a whole pickled model?)", path.display()));
    };
    let top = top.borrow();
    // A wrapper first: beside its state dict it may hold a tensor of its own (`best_acc1`).
    for key in WRAPPER_KEYS {
        let inner = top.iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Dict(d)) if k == key => Some(d.clone()),
            _ => None,
        });
        if let Some(inner) = inner {
            if let Some(t) = tensors_of(&inner.borrow(), &storages)? {
                return Ok(unwrap_state_dict(t));
            }
        }
    }
    if let Some(t) = tensors_of(&top, &storages)? {
        return Ok(unwrap_state_dict(t));
    }
    let keys: Vec<String> = top
        .iter()
        .map(|(k, _)| match k {
            Value::Str(s) => format!("`{s}`"),
            other => format!("{other:?}"),
        })
        .collect();
    err(format!(
        "{}: no tensors at the top level nor under {} (top-level keys: {})",
        path.display(),
        WRAPPER_KEYS.map(|k| format!("`{k}`")).join(", "),
        keys.join(", ")
    ))
}

/// Removes the `module.` prefix `torch.nn.DataParallel` puts on every key, when every key has it.
pub fn unwrap_state_dict(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    if !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with("module.")) {
        return tensors.into_iter().map(|(k, t)| (k["module.".len()..].to_string(), t)).collect();
    }
    tensors
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Value> {
        Machine::default().run(&mut Cursor { data: bytes, pos: 0 })
    }

    #[test]
    fn unknown_globals_are_never_called() {
        // pickle.dumps(os.system("echo pwned")) as a reduce: `cos\nsystem\n(S'echo'\ntR.`
        // in protocol 2 spelling: GLOBAL os.system, a one-string tuple, REDUCE, STOP.
        let p = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.";
        match run(p).unwrap() {
            Value::Object(name) => assert_eq!(name, "os.system"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn integers_and_truncation() {
        // LONG1 of -2 (one byte 0xfe), BININT2 513.
        assert!(matches!(run(b"\x80\x02\x8a\x01\xfe.").unwrap(), Value::Int(-2)));
        assert!(matches!(run(b"\x80\x02M\x01\x02.").unwrap(), Value::Int(513)));
        let e = run(b"\x80\x02X\x09\x00\x00\x00ab").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = run(b"\x80\x02I1\n.").unwrap_err().to_string();
        assert!(e.contains("opcode 0x49"), "{e}");
    }

    #[test]
    fn strided_views_are_made_contiguous() {
        // A 2x3 view with strides (1, 2) of storage [0, 1, 2, 3, 4, 5] (a transpose).
        let data: Vec<u8> = (0..6).flat_map(|v: i32| (v as f32).to_le_bytes()).collect();
        let storages = HashMap::from([("0".to_string(), data)]);
        let t = TensorRef { storage: "0".into(), dtype: DType::F32, offset: 0, size: vec![2, 3], stride: vec![1, 2] };
        let got = materialize(&t, &storages).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got, vec![vec![0., 2., 4.], vec![1., 3., 5.]]);
        let t = TensorRef { storage: "0".into(), dtype: DType::F32, offset: 4, size: vec![3], stride: vec![1] };
        assert!(materialize(&t, &storages).unwrap_err().to_string().contains("past the end"));
    }
}
