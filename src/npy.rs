//! npy.rs — a small reader and writer for NumPy `.npy` files (format versions 1, 2 and 3),
//! enough for calibration data: little-endian `f4`, `f8`, `i4`, `i8` arrays in C order. It sits at
//! the edge of the flow: the `int8rt calibrate` command and the golden tests read their inputs
//! with it, then hand plain slices and shapes to [`crate::calib`].
//!
//! Format (numpy `lib/format.py`): the magic `\x93NUMPY`, a major and minor version byte, the
//! header length (`u16` little-endian for version 1, `u32` for versions 2 and 3), then an ASCII
//! (version 3: UTF-8) Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`
//! padded with spaces and a newline, then the raw data.

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The element types this reader understands (all little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `<i4`
    I32,
    /// `<i8`
    I64,
}

impl DType {
    fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }
    fn descr(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::F64 => "<f8",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
        }
    }
}

/// The typed data of an array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// One array: its shape (C order) and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The shape; empty for a 0-d array (which holds one element).
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: NpyData,
}

impl NpyArray {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            NpyData::F32(_) => DType::F32,
            NpyData::F64(_) => DType::F64,
            NpyData::I32(_) => DType::I32,
            NpyData::I64(_) => DType::I64,
        }
    }

    /// The data as `f32`, or a [`Error::Format`] naming `file` if the array holds another type.
    pub fn into_f32(self, file: &str) -> Result<Vec<f32>> {
        match self.data {
            NpyData::F32(v) => Ok(v),
            _ => Err(Error::Format {
                file: file.to_string(),
                detail: format!(
                    "expected a float32 array ('<f4'), found '{}'",
                    self.dtype().descr()
                ),
            }),
        }
    }
}

/// Read a `.npy` file.
pub fn read(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    parse(&bytes, &name)
}

/// Parse the bytes of a `.npy` file; `file` names it in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<NpyArray> {
    let err = |detail: String| Error::Format {
        file: file.to_string(),
        detail,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err("not a .npy file (missing the \\x93NUMPY magic)".into()));
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err("truncated header".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(err(format!("unsupported .npy format version {v}"))),
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| err("header length runs past the end of the file".into()))?;
    let header = std::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|_| err("header is not valid text".into()))?;
    let (dtype, fortran, shape) = parse_header(header).map_err(err)?;
    if fortran {
        return Err(err(
            "Fortran-order arrays are not supported; save with np.ascontiguousarray".into(),
        ));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("shape {shape:?} overflows usize")))?;
    let payload = &bytes[data_start..];
    let need = count
        .checked_mul(dtype.size())
        .ok_or_else(|| err(format!("shape {shape:?} overflows usize")))?;
    if payload.len() < need {
        return Err(err(format!(
            "data is truncated: shape {shape:?} of '{}' needs {need} bytes, found {}",
            dtype.descr(),
            payload.len()
        )));
    }
    let payload = &payload[..need];
    let data = match dtype {
        DType::F32 => NpyData::F32(
            payload
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::I32 => NpyData::I32(
            payload
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::F64 => NpyData::F64(
            payload
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
        ),
        DType::I64 => NpyData::I64(
            payload
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                .collect(),
        ),
    };
    Ok(NpyArray { shape, data })
}

/// Parse the header dict: `(dtype, fortran_order, shape)`.
fn parse_header(h: &str) -> std::result::Result<(DType, bool, Vec<usize>), String> {
    let descr = dict_value(h, "descr")?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        other => {
            return Err(format!(
                "unsupported dtype '{other}' (supported: '<f4', '<f8', '<i4', '<i8')"
            ))
        }
    };
    let fortran = match dict_value(h, "fortran_order")?.trim() {
        "False" => false,
        "True" => true,
        other => return Err(format!("bad fortran_order value '{other}'")),
    };
    let shape_txt = dict_value(h, "shape")?;
    let inner = shape_txt
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape '{shape_txt}'"))?;
    let mut shape = Vec::new();
    for part in inner.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let p = p.trim_end_matches('L');
        shape.push(
            p.parse::<usize>()
                .map_err(|_| format!("bad shape entry '{p}'"))?,
        );
    }
    Ok((dtype, fortran, shape))
}

/// The text of `key`'s value in the header dict (up to the next top-level comma or brace).
fn dict_value<'a>(h: &'a str, key: &str) -> std::result::Result<&'a str, String> {
    let pos = h
        .find(&format!("'{key}'"))
        .or_else(|| h.find(&format!("\"{key}\"")))
        .ok_or_else(|| format!("header has no '{key}' entry"))?;
    let rest = &h[pos + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')
        .ok_or_else(|| format!("header entry '{key}' has no ':'"))?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Ok(&rest[..i]),
            _ => {}
        }
    }
    Err(format!("header entry '{key}' is not terminated"))
}

/// Serialize an `f32` array as a version-1 `.npy` file.
pub fn to_bytes_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::Dimension {
            what: "npy shape",
            detail: format!("{shape:?} overflows usize"),
        })?;
    if count != data.len() {
        return Err(Error::shape("npy data", count, data.len()));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so that the data starts on a 64-byte boundary, as numpy does.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Ok(out)
}

/// Write an `f32` array as a version-1 `.npy` file.
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes_f32(shape, data)?;
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_f32() {
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let bytes = to_bytes_f32(&[3, 4], &data).unwrap();
        assert_eq!(
            (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
            0
        );
        let a = parse(&bytes, "t").unwrap();
        assert_eq!(a.shape, vec![3, 4]);
        assert_eq!(a.into_f32("t").unwrap(), data);
        let one = parse(&to_bytes_f32(&[5], &[1.0; 5]).unwrap(), "t").unwrap();
        assert_eq!(one.shape, vec![5]);
        let scalar = parse(&to_bytes_f32(&[], &[7.0]).unwrap(), "t").unwrap();
        assert_eq!(scalar.shape, Vec::<usize>::new());
        assert_eq!(scalar.data, NpyData::F32(vec![7.0]));
    }

    fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let pos = hay.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = hay.to_vec();
        out[pos..pos + from.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(parse(b"hello", "t"), Err(Error::Format { .. })));
        let mut bytes = to_bytes_f32(&[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        bytes.truncate(bytes.len() - 1);
        let e = parse(&bytes, "t").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let fortran = replace(
            &to_bytes_f32(&[2, 2], &[0.0; 4]).unwrap(),
            b"False",
            b"True ",
        );
        let e = parse(&fortran, "t").unwrap_err().to_string();
        assert!(e.contains("Fortran"), "{e}");
        let other = replace(&to_bytes_f32(&[1], &[0.0]).unwrap(), b"<f4", b"<u2");
        let e = parse(&other, "t").unwrap_err().to_string();
        assert!(e.contains("unsupported dtype"), "{e}");
    }
}
