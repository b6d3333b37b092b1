//! Reading the user's `.npy` files and writing the result: every error names the file.
//!
//! ndarray-npy parses the header (a Python literal) and reads float32, float64 and integer data;
//! it has no float16, whose data (2-byte words after the same header) is decoded here. The
//! data's length is checked against the file's before anything is allocated, so a header that
//! claims more than the file holds is a "truncated" error, never a huge allocation.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek};
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::ReadableElement;
use ndarray_npy::npy::header::{Header, Layout, ReadHeaderError};

use crate::cli::CliError;

/// A float array from a file, with the values exactly as the file holds them.
#[derive(Debug, Clone)]
pub(super) struct FloatInput {
    /// The `--in` name (`a`, `w`, `q`, ...).
    pub(super) name: String,
    /// The file.
    pub(super) path: PathBuf,
    /// Its shape, C order.
    pub(super) shape: Vec<usize>,
    /// Its values in C order, widened to f64 without loss.
    pub(super) values: Vec<f64>,
    /// The file's element type.
    pub(super) elem: Elem,
}

/// The float element types `pertoken run` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Elem {
    F16,
    F32,
    F64,
}

impl Elem {
    pub(super) fn numpy(self) -> &'static str {
        match self {
            Elem::F16 => "float16",
            Elem::F32 => "float32",
            Elem::F64 => "float64",
        }
    }
}

/// An opened file: its header and a reader at the first byte of data, checked to hold exactly
/// the bytes the header promises for `item` bytes an element.
struct Opened {
    header: Header,
    reader: BufReader<File>,
    len: usize,
}

fn fail(path: &Path, what: impl std::fmt::Display) -> CliError {
    format!("{}: {what}", path.display()).into()
}

/// numpy's name for a descriptor such as `<f4`, for messages.
fn numpy_name(descr: &str) -> String {
    let kind = descr.trim_start_matches(['<', '>', '|', '=']);
    let name = match kind {
        "f2" => "float16",
        "f4" => "float32",
        "f8" => "float64",
        "i1" => "int8",
        "i2" => "int16",
        "i4" => "int32",
        "i8" => "int64",
        "u1" => "uint8",
        "u2" => "uint16",
        "u4" => "uint32",
        "u8" => "uint64",
        "b1" => "bool",
        "c8" => "complex64",
        "c16" => "complex128",
        _ => return format!("{descr:?}"),
    };
    format!("{name} ({descr:?})")
}

fn open(path: &Path) -> Result<(Opened, String), CliError> {
    let file = File::open(path).map_err(|e| fail(path, format!("cannot open it: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| fail(path, format!("cannot read its size: {e}")))?
        .len();
    let mut reader = BufReader::new(file);
    let header = Header::from_reader(&mut reader).map_err(|e| {
        let cut = matches!(&e, ReadHeaderError::Io(io) if io.kind() == ErrorKind::UnexpectedEof);
        let mut magic = [0u8; 6];
        let npy = File::open(path).is_ok_and(|mut f| f.read_exact(&mut magic).is_ok())
            && &magic == b"\x93NUMPY";
        if cut && npy {
            fail(
                path,
                format!("truncated: the file ({file_len} bytes) ends inside its .npy header"),
            )
        } else {
            fail(
                path,
                format!(
                    "not a readable .npy file ({e}); write it with numpy.save (np.save(path, \
                     array))"
                ),
            )
        }
    })?;
    let descr = match header.type_descriptor.as_string() {
        Some(s) => s.clone(),
        None => {
            return Err(fail(
                path,
                format!(
                    "a structured dtype ({}) is not supported; save a plain float array",
                    header.type_descriptor
                ),
            ));
        }
    };
    let item: u64 = match descr.trim_start_matches(['<', '>', '|', '=']) {
        "f2" | "i2" | "u2" => 2,
        "f4" | "i4" | "u4" => 4,
        "f8" | "i8" | "u8" => 8,
        "i1" | "u1" | "b1" => 1,
        "c8" => 8,
        "c16" => 16,
        _ => 0,
    };
    let len = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| fail(path, format!("shape {:?} overflows", header.shape)))?;
    if item > 0 {
        let at = reader
            .stream_position()
            .map_err(|e| fail(path, format!("cannot read it: {e}")))?;
        let need = (len as u64).saturating_mul(item);
        let have = file_len.saturating_sub(at);
        if have < need {
            return Err(fail(
                path,
                format!(
                    "truncated: the header says {} of shape {:?} ({need} bytes of data), but \
                     the file holds {have} bytes after its header",
                    numpy_name(&descr),
                    header.shape
                ),
            ));
        }
        if have > need {
            return Err(fail(
                path,
                format!(
                    "{} bytes past the end of the data the header describes ({} of shape \
                     {:?}); the file is not a single .npy array",
                    have - need,
                    numpy_name(&descr),
                    header.shape
                ),
            ));
        }
    }
    Ok((
        Opened {
            header,
            reader,
            len,
        },
        descr,
    ))
}

/// Reads the data as `T` through ndarray-npy (which checks the descriptor once more).
fn data<T: ReadableElement>(path: &Path, o: &mut Opened) -> Result<Vec<T>, CliError> {
    T::read_to_end_exact_vec(&mut o.reader, &o.header.type_descriptor, o.len)
        .map_err(|e| fail(path, format!("cannot read its data: {e}")))
}

/// Puts Fortran-order data into C order (numpy writes `fortran_order: True` for the transpose
/// of a C array, `np.asfortranarray`, and arrays from Fortran or MATLAB code).
fn c_order<T: Copy>(shape: &[usize], layout: Layout, data: Vec<T>) -> Vec<T> {
    if !layout.is_fortran() || shape.len() < 2 {
        return data;
    }
    let a = ArrayD::from_shape_vec(IxDyn(shape).f(), data)
        .expect("the length was checked against the shape");
    a.as_standard_layout().iter().copied().collect()
}

/// The multi-index of flat (C-order) element `flat` of `shape`.
pub(super) fn multi_index(flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    let mut rest = flat;
    for (i, &d) in shape.iter().enumerate().rev() {
        idx[i] = rest % d.max(1);
        rest /= d.max(1);
    }
    idx
}

/// Where element `flat` is, for messages: `element 17 (index [0, 2, 1])`.
pub(super) fn at(flat: usize, shape: &[usize]) -> String {
    format!("element {flat} (index {:?})", multi_index(flat, shape))
}

/// Reads a float32, float16 or float64 `.npy` file into f64 (exactly), in C order. Refuses
/// other dtypes, zero-sized dimensions, and NaN or infinite values (saying where).
pub(super) fn read_float(name: &str, path: &Path) -> Result<FloatInput, CliError> {
    let (mut o, descr) = open(path)?;
    let (values, elem) = match descr.as_str() {
        "<f4" | ">f4" => {
            let v: Vec<f32> = data(path, &mut o)?;
            (v.into_iter().map(f64::from).collect(), Elem::F32)
        }
        "<f8" | ">f8" => (data::<f64>(path, &mut o)?, Elem::F64),
        "<f2" | ">f2" => {
            let mut bytes = vec![0u8; o.len * 2];
            o.reader
                .read_exact(&mut bytes)
                .map_err(|e| fail(path, format!("cannot read its data: {e}")))?;
            let word = |c: &[u8]| {
                let b = [c[0], c[1]];
                if descr.starts_with('<') {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                }
            };
            let v = bytes
                .chunks_exact(2)
                .map(|c| f64::from(half::f16::from_bits(word(c))))
                .collect();
            (v, Elem::F16)
        }
        other => {
            return Err(fail(
                path,
                format!(
                    "{name} has dtype {}; give float32, float16 or float64 \
                     (x.astype(np.float32))",
                    numpy_name(other)
                ),
            ));
        }
    };
    let shape = o.header.shape.clone();
    if shape.contains(&0) {
        return Err(fail(
            path,
            format!(
                "{name} has shape {shape:?}, with a zero-sized dimension; the kernels need at least one element"
            ),
        ));
    }
    if o.header.layout.is_fortran() && shape.len() > 1 {
        eprintln!(
            "note: {}: Fortran order, converted to C order",
            path.display()
        );
    }
    let values = c_order(&shape, o.header.layout, values);
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(fail(
            path,
            format!(
                "{name} holds {} at {}; the inputs must be finite",
                values[i],
                at(i, &shape)
            ),
        ));
    }
    Ok(FloatInput {
        name: name.to_owned(),
        path: path.to_owned(),
        shape,
        values,
        elem,
    })
}

/// Reads an integer `.npy` file (int8 to int64, uint8 to uint64) as i128, in C order.
pub(super) fn read_ints(name: &str, path: &Path) -> Result<(Vec<usize>, Vec<i128>), CliError> {
    let (mut o, descr) = open(path)?;
    fn wide<T: Into<i128>>(v: Vec<T>) -> Vec<i128> {
        v.into_iter().map(Into::into).collect()
    }
    let kind = descr.trim_start_matches(['<', '>', '|', '=']);
    let values = match kind {
        "i1" => wide(data::<i8>(path, &mut o)?),
        "u1" => wide(data::<u8>(path, &mut o)?),
        "i2" => wide(data::<i16>(path, &mut o)?),
        "u2" => wide(data::<u16>(path, &mut o)?),
        "i4" => wide(data::<i32>(path, &mut o)?),
        "u4" => wide(data::<u32>(path, &mut o)?),
        "i8" => wide(data::<i64>(path, &mut o)?),
        "u8" => wide(data::<u64>(path, &mut o)?),
        _ => {
            return Err(fail(
                path,
                format!(
                    "{name} has dtype {}; token ids are integers: give uint32, int32 or int64 \
                     (ids.astype(np.int64))",
                    numpy_name(&descr)
                ),
            ));
        }
    };
    let shape = o.header.shape.clone();
    if shape.contains(&0) {
        return Err(fail(
            path,
            format!(
                "{name} has shape {shape:?}, with a zero-sized dimension; give at least one id"
            ),
        ));
    }
    Ok((shape.clone(), c_order(&shape, o.header.layout, values)))
}

/// Writes `values` as a float32 `.npy` file of `shape`.
pub(super) fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<(), CliError> {
    let a = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).map_err(|e| {
        fail(
            path,
            format!("the output does not fit its shape {shape:?}: {e}"),
        )
    })?;
    ndarray_npy::write_npy(path, &a).map_err(|e| fail(path, format!("cannot write it: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_index_is_c_order() {
        assert_eq!(multi_index(0, &[2, 3, 4]), vec![0, 0, 0]);
        assert_eq!(multi_index(23, &[2, 3, 4]), vec![1, 2, 3]);
        assert_eq!(multi_index(17, &[2, 3, 4]), vec![1, 1, 1]);
    }

    #[test]
    fn fortran_data_is_transposed_into_c_order() {
        // [[1, 2, 3], [4, 5, 6]] in Fortran order is stored column by column.
        let f = vec![1, 4, 2, 5, 3, 6];
        assert_eq!(c_order(&[2, 3], Layout::Fortran, f), vec![1, 2, 3, 4, 5, 6]);
    }
}
