//! io/safetensors.rs — the safetensors container: a strict header parser, memory-mapped files
//! with zero-copy tensor views, float conversion (f32/f16/bf16 → f32), and a writer that streams
//! tensors one at a time. This is the bottom of the `io` flow: `io::compressed` reads and writes
//! quantized layers through it, the `int8rt` command line and the MiniLM example read models.
//!
//! Format (as written by the reference `safetensors` library): an 8-byte little-endian header
//! length `N`, `N` bytes of UTF-8 JSON mapping each tensor name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the data section) plus
//! an optional `"__metadata__"` map of strings, then the data section. The parser accepts exactly
//! what the reference library accepts: tensors tile the data section with no gap or overlap, and
//! every byte count matches its dtype and shape. Any other header is an [`Error::Format`] or
//! [`Error::Tensor`] that names the file and the tensor — never a panic, never a read out of
//! bounds (the fuzz target in `fuzz/` checks this).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use half::{bf16, f16};
use serde_json::Value;

use crate::error::{Error, Result};

/// Headers larger than this are refused (the reference library's limit).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Declares [`Dtype`] and its per-variant tables from one list, so the variants, [`Dtype::ALL`],
/// the header names and the element sizes cannot drift apart.
macro_rules! dtypes {
    ($($(#[$doc:meta])* $v:ident = $name:literal, $size:literal;)*) => {
        /// Element types of the safetensors format.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Dtype {
            $($(#[$doc])* $v,)*
        }

        impl Dtype {
            /// Every dtype, in declaration order.
            pub const ALL: [Dtype; [$(Dtype::$v),*].len()] = [$(Dtype::$v),*];

            /// Bytes per element.
            pub fn size(self) -> usize {
                match self {
                    $(Dtype::$v => $size,)*
                }
            }

            /// The name in the header (`"F32"`, `"BF16"`, ...).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Dtype::$v => $name,)*
                }
            }
        }
    };
}

dtypes! {
    Bool = "BOOL", 1;
    U8 = "U8", 1;
    I8 = "I8", 1;
    F8E5M2 = "F8_E5M2", 1;
    F8E4M3 = "F8_E4M3", 1;
    I16 = "I16", 2;
    U16 = "U16", 2;
    F16 = "F16", 2;
    BF16 = "BF16", 2;
    I32 = "I32", 4;
    U32 = "U32", 4;
    F32 = "F32", 4;
    F64 = "F64", 8;
    I64 = "I64", 8;
    U64 = "U64", 8;
}

impl Dtype {
    /// Parse a header dtype name (the inverse of [`Dtype::as_str`]).
    pub fn parse(s: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether [`TensorView::to_f32`] reads this dtype (F32, F16, BF16).
    pub fn is_supported_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }

    /// Whether this is an integer dtype that [`TensorView::to_i64`] reads exactly.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Dtype::U8 | Dtype::I8 | Dtype::I16 | Dtype::U16 | Dtype::I32 | Dtype::U32 | Dtype::I64
        )
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header entry: dtype, shape and the byte range within the data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// `[begin, end)` relative to the start of the data section.
    pub data_offsets: (usize, usize),
}

impl TensorInfo {
    /// Number of elements (the product of the shape; 1 for a scalar).
    pub fn numel(&self) -> usize {
        // Checked when the header was parsed; saturates for hand-built entries.
        self.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
}

/// A parsed and validated header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Tensors by name.
    pub tensors: BTreeMap<String, TensorInfo>,
    /// The `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    /// Offset of the data section in the file (`8 + N`).
    pub data_start: usize,
}

fn format_err(file: &str, detail: impl Into<String>) -> Error {
    Error::Format {
        file: file.to_string(),
        detail: detail.into(),
    }
}

fn tensor_err(file: &str, tensor: &str, detail: impl Into<String>) -> Error {
    Error::Tensor {
        file: file.to_string(),
        tensor: tensor.to_string(),
        detail: detail.into(),
    }
}

/// Parse and validate the header of a safetensors buffer (the whole file). `file` names it in
/// errors. Checks everything the reference library checks: header bounds, JSON shape, dtypes,
/// `numel · size == end − begin` without overflow, and that the tensors tile the data section.
pub fn parse_header(file: &str, bytes: &[u8]) -> Result<Header> {
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(format_err(
            file,
            format!(
                "{} bytes is too short for a safetensors header length",
                bytes.len()
            ),
        ));
    };
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(n8);
    if n > MAX_HEADER_LEN {
        return Err(format_err(
            file,
            format!("header length {n} exceeds the limit of {MAX_HEADER_LEN} bytes"),
        ));
    }
    // n ≤ 1e8, so this cannot overflow usize on 32- or 64-bit targets.
    let data_start = 8 + n as usize;
    let Some(header_bytes) = bytes.get(8..data_start) else {
        return Err(format_err(
            file,
            format!(
                "header length {n} runs past the end of the file ({} bytes)",
                bytes.len()
            ),
        ));
    };
    if header_bytes.first() != Some(&b'{') {
        return Err(format_err(file, "the header does not start with `{`"));
    }
    let root: serde_json::Map<String, Value> = serde_json::from_slice(header_bytes)
        .map_err(|e| format_err(file, format!("header is not a JSON object: {e}")))?;
    let data_len = bytes.len() - data_start;

    let mut header = Header {
        data_start,
        ..Header::default()
    };
    for (name, v) in root {
        if name == "__metadata__" {
            let Value::Object(m) = v else {
                return Err(format_err(file, "`__metadata__` is not a JSON object"));
            };
            for (k, val) in m {
                let Value::String(s) = val else {
                    return Err(format_err(
                        file,
                        format!("`__metadata__` entry `{k}` is not a string"),
                    ));
                };
                header.metadata.insert(k, s);
            }
            continue;
        }
        let info = parse_entry(file, &name, &v)?;
        header.tensors.insert(name, info);
    }

    // The tensors must tile [0, data_len) exactly, as in the reference library.
    let mut by_offset: Vec<(&String, &TensorInfo)> = header.tensors.iter().collect();
    by_offset.sort_by_key(|(_, t)| t.data_offsets);
    let mut expected = 0usize;
    for (name, t) in by_offset {
        let (b, e) = t.data_offsets;
        if b != expected {
            return Err(tensor_err(
                file,
                name,
                format!(
                    "data_offsets [{b}, {e}] do not start where the previous tensor ends ({expected}): tensors overlap or leave a gap"
                ),
            ));
        }
        expected = e;
    }
    if expected != data_len {
        return Err(format_err(
            file,
            format!("the tensors cover {expected} bytes but the data section holds {data_len}"),
        ));
    }
    Ok(header)
}

fn parse_entry(file: &str, name: &str, v: &Value) -> Result<TensorInfo> {
    let Value::Object(o) = v else {
        return Err(tensor_err(file, name, "header entry is not a JSON object"));
    };
    let dtype_s = o
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| tensor_err(file, name, "missing or non-string `dtype`"))?;
    let dtype = Dtype::parse(dtype_s)
        .ok_or_else(|| tensor_err(file, name, format!("unknown dtype `{dtype_s}`")))?;
    let shape_v = o
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| tensor_err(file, name, "missing or non-array `shape`"))?;
    let mut shape = Vec::with_capacity(shape_v.len());
    let mut numel = 1usize;
    for d in shape_v {
        let d = d
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| tensor_err(file, name, format!("shape entry {d} is not a size")))?;
        numel = numel.checked_mul(d).ok_or_else(|| {
            tensor_err(
                file,
                name,
                format!("shape {shape_v:?} overflows the element count"),
            )
        })?;
        shape.push(d);
    }
    let offs = o
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| tensor_err(file, name, "missing or non-array `data_offsets`"))?;
    let off = |i: usize| -> Result<usize> {
        offs.get(i)
            .and_then(Value::as_u64)
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| tensor_err(file, name, "`data_offsets` must be two sizes [begin, end]"))
    };
    if offs.len() != 2 {
        return Err(tensor_err(
            file,
            name,
            "`data_offsets` must be two sizes [begin, end]",
        ));
    }
    let (b, e) = (off(0)?, off(1)?);
    if b > e {
        return Err(tensor_err(
            file,
            name,
            format!("data_offsets [{b}, {e}] run backwards"),
        ));
    }
    let nbytes = numel.checked_mul(dtype.size()).ok_or_else(|| {
        tensor_err(
            file,
            name,
            format!("shape {shape:?} of {dtype} overflows the byte count"),
        )
    })?;
    if e - b != nbytes {
        return Err(tensor_err(
            file,
            name,
            format!(
                "data_offsets [{b}, {e}] hold {} bytes but shape {shape:?} of {dtype} needs {nbytes}",
                e - b
            ),
        ));
    }
    Ok(TensorInfo {
        dtype,
        shape,
        data_offsets: (b, e),
    })
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A safetensors file, memory-mapped (or held in memory), with a validated header. Tensors are
/// read through [`TensorView`]s that borrow the mapping: nothing is copied until a view is
/// converted.
pub struct SafeTensors {
    file: String,
    storage: Storage,
    header: Header,
}

impl std::fmt::Debug for SafeTensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensors")
            .field("file", &self.file)
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl SafeTensors {
    /// Map a file read-only and validate its header.
    ///
    /// The file must not be truncated or rewritten by another process while this value lives
    /// (the usual contract of memory-mapped model files: safetensors, candle and llama.cpp make
    /// the same one). `int8rt` itself only ever writes checkpoints to a temporary name and renames
    /// it into place, which leaves existing mappings intact.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let io_err = |source| Error::Io {
            path: name.clone(),
            source,
        };
        let f = File::open(path).map_err(io_err)?;
        let meta = f.metadata().map_err(io_err)?;
        // (mapping a directory fails with ENODEV, "No such device": say what it is instead)
        if meta.is_dir() {
            return Err(io_err(std::io::ErrorKind::IsADirectory.into()));
        }
        if !meta.is_file() {
            return Err(format_err(
                &name,
                "not a regular file (a checkpoint is memory-mapped)",
            ));
        }
        let len = meta.len();
        if len < 8 {
            return Err(format_err(
                &name,
                format!("{len} bytes is too short for a safetensors header length"),
            ));
        }
        // SAFETY: `Mmap::map` is unsafe because the mapped bytes may change if another process
        // writes or truncates the file while it is mapped. The mapping is read-only (we never
        // write through it) and the contract above — the file stays unchanged while this value
        // lives — is documented on this function; every read below goes through bounds-checked
        // slices of the mapping's length, which the header parser validated.
        let map = unsafe { memmap2::MmapOptions::new().map(&f) }.map_err(io_err)?;
        Self::with_storage(name, Storage::Mapped(map))
    }

    /// Validate and wrap a buffer that is already in memory (tests, fuzzing, downloads).
    pub fn from_bytes(file: impl Into<String>, bytes: Vec<u8>) -> Result<Self> {
        Self::with_storage(file.into(), Storage::Owned(bytes))
    }

    fn with_storage(file: String, storage: Storage) -> Result<Self> {
        let header = parse_header(&file, storage.bytes())?;
        Ok(SafeTensors {
            file,
            storage,
            header,
        })
    }

    /// The file name used in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.header.metadata
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.header.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.header.tensors.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.header.tensors.is_empty()
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.header.tensors.contains_key(name)
    }

    /// The header entry of a tensor, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensors.get(name)
    }

    /// A zero-copy view of a tensor; Err naming it when absent.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        self.get(name)
            .ok_or_else(|| tensor_err(&self.file, name, "not found"))
    }

    /// A zero-copy view of a tensor, `None` when absent.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        let (key, info) = self.header.tensors.get_key_value(name)?;
        let (b, e) = info.data_offsets;
        let start = self.header.data_start + b;
        let end = self.header.data_start + e;
        // In bounds: the parser checked that the tensors tile the data section exactly.
        let data = self.storage.bytes().get(start..end)?;
        Some(TensorView {
            file: &self.file,
            name: key,
            info,
            data,
        })
    }
}

/// A borrowed tensor: its header entry and its raw little-endian bytes.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    file: &'a str,
    name: &'a str,
    info: &'a TensorInfo,
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The tensor's name.
    pub fn name(&self) -> &'a str {
        self.name
    }
    /// Its dtype.
    pub fn dtype(&self) -> Dtype {
        self.info.dtype
    }
    /// Its shape.
    pub fn shape(&self) -> &'a [usize] {
        &self.info.shape
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.info.numel()
    }
    /// The raw bytes (little-endian, possibly unaligned).
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// An error about this tensor.
    pub fn error(&self, detail: impl Into<String>) -> Error {
        tensor_err(self.file, self.name, detail)
    }

    /// The values as f32: exact for F32, F16 and BF16 (every f16 and bf16 is an f32). Other
    /// dtypes are an error naming the tensor.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let d = self.data;
        Ok(match self.info.dtype {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(self.error(format!(
                    "dtype {other} is not a float type this crate reads (F32, F16, BF16)"
                )))
            }
        })
    }

    /// The values of an I8 tensor; other dtypes are an error naming the tensor.
    pub fn to_i8(&self) -> Result<Vec<i8>> {
        if self.info.dtype != Dtype::I8 {
            return Err(self.error(format!("dtype {} where I8 was expected", self.info.dtype)));
        }
        Ok(bytemuck::cast_slice::<u8, i8>(self.data).to_vec())
    }

    /// The values of an integer tensor (U8, I8, I16, U16, I32, U32, I64) as i64, exactly.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let d = self.data;
        Ok(match self.info.dtype {
            Dtype::U8 => d.iter().map(|&b| b as i64).collect(),
            Dtype::I8 => d.iter().map(|&b| b as i8 as i64).collect(),
            Dtype::I16 => d
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            Dtype::U16 => d
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            Dtype::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            Dtype::U32 => d
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            Dtype::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            other => {
                return Err(self.error(format!(
                    "dtype {other} is not an integer type this crate reads exactly"
                )))
            }
        })
    }
}

/// Encode f32 values in a float dtype: F32 as is, F16 and BF16 rounded to nearest even. Values
/// that overflow the target become ±inf; callers that store scales check the result.
pub fn encode_f32(dtype: Dtype, xs: &[f32]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(xs.len() * dtype.size());
    match dtype {
        Dtype::F32 => xs
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Dtype::F16 => xs
            .iter()
            .for_each(|&x| out.extend_from_slice(&f16::from_f32(x).to_le_bytes())),
        Dtype::BF16 => xs
            .iter()
            .for_each(|&x| out.extend_from_slice(&bf16::from_f32(x).to_le_bytes())),
        other => {
            return Err(Error::Unsupported(format!(
                "encoding floats as {other} (F32, F16 and BF16 are supported)"
            )))
        }
    }
    Ok(out)
}

/// `x` rounded to `dtype` and back (identity for F32).
pub fn round_to_dtype(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::F16 => f16::from_f32(x).to_f32(),
        Dtype::BF16 => bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// What a tensor to be written will be: name, dtype and shape (its bytes come later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Bytes this tensor occupies.
    pub fn nbytes(&self) -> Result<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::Dimension {
                what: "tensor bytes",
                detail: format!("`{}`: shape {:?} overflows", self.name, self.shape),
            })
    }
}

/// A tensor held in memory, ready to write.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorBuf {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub data: Vec<u8>,
}

impl TensorBuf {
    /// f32 values stored in a float dtype (F32, or rounded to F16 / BF16).
    pub fn from_f32(dtype: Dtype, shape: Vec<usize>, xs: &[f32]) -> Result<Self> {
        Ok(TensorBuf {
            dtype,
            shape,
            data: encode_f32(dtype, xs)?,
        })
    }
    /// I8 values.
    pub fn from_i8(shape: Vec<usize>, xs: &[i8]) -> Self {
        TensorBuf {
            dtype: Dtype::I8,
            shape,
            data: bytemuck::cast_slice::<i8, u8>(xs).to_vec(),
        }
    }
}

/// The header bytes (padded so the data section starts 8-byte aligned, as the reference writer
/// does) and the specs in data order (by name).
fn build_header<'a>(
    file: &str,
    specs: &'a [TensorSpec],
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, Vec<&'a TensorSpec>)> {
    let mut order: Vec<&TensorSpec> = specs.iter().collect();
    order.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), Value::Object(m));
    }
    let mut offset = 0usize;
    for (i, s) in order.iter().enumerate() {
        if s.name == "__metadata__" || (i > 0 && order[i - 1].name == s.name) {
            return Err(format_err(
                file,
                format!("tensor name `{}` is reserved or repeated", s.name),
            ));
        }
        let end = offset
            .checked_add(s.nbytes()?)
            .ok_or_else(|| format_err(file, "the data section overflows usize"))?;
        header.insert(
            s.name.clone(),
            serde_json::json!({
                "dtype": s.dtype.as_str(),
                "shape": s.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut hbytes = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| format_err(file, format!("cannot serialize the header: {e}")))?;
    while hbytes.len() % 8 != 0 {
        hbytes.push(b' ');
    }
    Ok((hbytes, order))
}

/// Write a safetensors file, asking `produce` for each tensor's bytes in turn so that a large
/// model never has to be held in memory at once. Tensors are laid out in name order; each produced
/// buffer must have exactly the size its spec implies. The file is written under a temporary name
/// and renamed into place, so a failure never leaves a truncated checkpoint behind.
pub fn write_streaming<F>(
    path: impl AsRef<Path>,
    specs: &[TensorSpec],
    metadata: &BTreeMap<String, String>,
    mut produce: F,
) -> Result<()>
where
    F: FnMut(&TensorSpec) -> Result<Vec<u8>>,
{
    let path = path.as_ref();
    let name = path.display().to_string();
    let (hbytes, order) = build_header(&name, specs, metadata)?;
    let tmp = path.with_extension("safetensors.partial");
    let tmp_name = tmp.display().to_string();
    let result = (|| -> Result<()> {
        let io_err = |source| Error::Io {
            path: tmp_name.clone(),
            source,
        };
        let f = File::create(&tmp).map_err(io_err)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        w.write_all(&(hbytes.len() as u64).to_le_bytes())
            .map_err(io_err)?;
        w.write_all(&hbytes).map_err(io_err)?;
        for s in &order {
            let bytes = produce(s)?;
            let nbytes = s.nbytes()?;
            if bytes.len() != nbytes {
                return Err(Error::Tensor {
                    file: name.clone(),
                    tensor: s.name.clone(),
                    detail: format!(
                        "{} bytes produced where shape {:?} of {} needs {nbytes}",
                        bytes.len(),
                        s.shape,
                        s.dtype
                    ),
                });
            }
            w.write_all(&bytes).map_err(io_err)?;
        }
        let f = w.into_inner().map_err(|e| io_err(e.into_error()))?;
        f.sync_all().map_err(io_err)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: name, source })
}

/// Write tensors held in memory (see [`write_streaming`]).
pub fn write(
    path: impl AsRef<Path>,
    tensors: &BTreeMap<String, TensorBuf>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(n, t)| TensorSpec {
            name: n.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    write_streaming(path, &specs, metadata, |s| lookup(tensors, &s.name))
}

fn lookup(tensors: &BTreeMap<String, TensorBuf>, name: &str) -> Result<Vec<u8>> {
    tensors
        .get(name)
        .map(|t| t.data.clone())
        .ok_or_else(|| tensor_err("(in memory)", name, "not found"))
}

/// Serialize tensors held in memory into safetensors bytes (what [`write()`] puts in a file).
pub fn to_bytes(
    tensors: &BTreeMap<String, TensorBuf>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(n, t)| TensorSpec {
            name: n.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    let (hbytes, order) = build_header("(in memory)", &specs, metadata)?;
    let mut out = (hbytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&hbytes);
    for s in order {
        let data = lookup(tensors, &s.name)?;
        let nbytes = s.nbytes()?;
        if data.len() != nbytes {
            return Err(tensor_err(
                "(in memory)",
                &s.name,
                format!(
                    "{} bytes where shape {:?} of {} needs {nbytes}",
                    data.len(),
                    s.shape,
                    s.dtype
                ),
            ));
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}
