//! The IDX format of the MNIST files (`t10k-images-idx3-ubyte[.gz]`).
//!
//! Layout: two zero bytes, a type code, the number of dims, then each dim
//! as a big-endian u32, then the values row-major (big-endian for
//! multi-byte types). Gzip-compressed files (the form MNIST is distributed
//! in) are detected by their magic bytes and decompressed.

use oar_tensor::{Device, Error, Result, Tensor};
use std::io::Read;
use std::path::Path;

/// Reads an IDX file (plain or gzip) into a CPU tensor: u8 data as `U8`,
/// i8/i16/i32 as `I32`, f32 as `F32`, f64 as `F64`.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| Error::io(format!("reading IDX file {}", path.display()), e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::invalid_file(path, format!("gzip stream is corrupt or truncated: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(path, &bytes)
}

/// Parses IDX bytes; `path` names them in errors.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<Tensor> {
    let bad = |msg: String| Err(Error::invalid_file(path, msg));
    if bytes.len() < 4 {
        return bad(format!("{} bytes is too short for an IDX header", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return bad(format!("bad IDX magic {:02x} {:02x} (expected 00 00)", bytes[0], bytes[1]));
    }
    let (code, rank) = (bytes[2], bytes[3] as usize);
    let elem = match code {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        other => return bad(format!("unknown IDX data type 0x{other:02x}")),
    };
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return bad(format!("truncated header: {rank} dims need {header} bytes, the file has {}", bytes.len()));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let need = count.and_then(|c| c.checked_mul(elem)).and_then(|n| n.checked_add(header));
    match need {
        Some(n) if n == bytes.len() => {}
        Some(n) => {
            return bad(format!("dims {dims:?} need {n} bytes, the file has {} (truncated or padded)", bytes.len()))
        }
        None => return bad(format!("dims {dims:?} overflow")),
    }
    let data = &bytes[header..];
    let dev = Device::cpu();
    macro_rules! be {
        ($ty:ty, $n:literal) => {
            data.chunks_exact($n).map(|c| <$ty>::from_be_bytes(c.try_into().expect("n bytes")))
        };
    }
    match code {
        0x08 => Tensor::from_vec(data.to_vec(), dims, &dev),
        0x09 => Tensor::from_vec(data.iter().map(|&b| b as i8 as i32).collect::<Vec<i32>>(), dims, &dev),
        0x0B => Tensor::from_vec(be!(i16, 2).map(i32::from).collect::<Vec<i32>>(), dims, &dev),
        0x0C => Tensor::from_vec(be!(i32, 4).collect::<Vec<i32>>(), dims, &dev),
        0x0D => Tensor::from_vec(be!(f32, 4).collect::<Vec<f32>>(), dims, &dev),
        _ => Tensor::from_vec(be!(f64, 8).collect::<Vec<f64>>(), dims, &dev),
    }
}
