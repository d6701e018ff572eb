//! Tensors: the dtypes rinfer stores ([`DType`]), borrowed views of stored bytes
//! ([`TensorView`]), and the contiguous row-major f32 [`Tensor`] models compute on.

use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::kernels;

/// Element types rinfer reads from weight files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The safetensors spelling.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Elements of a shape, or `None` on overflow.
pub fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// A borrowed, typed view of little-endian bytes (for instance inside a mapped file).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    dtype: DType,
    shape: &'a [usize],
    bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// A view; the byte count must match the shape and dtype.
    pub fn new(dtype: DType, shape: &'a [usize], bytes: &'a [u8]) -> Result<Self> {
        let need = numel(shape).and_then(|n| n.checked_mul(dtype.size()));
        if need != Some(bytes.len()) {
            return Err(Error::InvalidInput(format!(
                "{} bytes cannot hold a {dtype} tensor of shape {shape:?}",
                bytes.len()
            )));
        }
        Ok(Self {
            dtype,
            shape,
            bytes,
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Converts to an owned f32 tensor with the active ISA's converters.
    pub fn to_f32(&self) -> Tensor {
        let n = self.bytes.len() / self.dtype.size();
        let mut data = vec![0.0f32; n];
        let k = kernels::active();
        match self.dtype {
            DType::F32 => {
                for (d, s) in data.iter_mut().zip(self.bytes.chunks_exact(4)) {
                    *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                }
            }
            DType::F16 => (k.f16_to_f32)(self.bytes, &mut data),
            DType::BF16 => (k.bf16_to_f32)(self.bytes, &mut data),
        }
        Tensor {
            shape: self.shape.to_vec(),
            data,
        }
    }
}

/// A contiguous, row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data` with `shape`; their sizes must agree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        if numel(&shape) != Some(data.len()) {
            return Err(Error::InvalidInput(format!(
                "{} values cannot fill shape {shape:?}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        let n = numel(shape)
            .ok_or_else(|| Error::InvalidInput(format!("shape {shape:?} overflows")))?;
        Ok(Self {
            shape: shape.to_vec(),
            data: vec![0.0; n],
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The values, consuming the tensor.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// `(rows, cols)` of a 2-D tensor.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(Error::InvalidInput(format!(
                "expected a 2-D tensor, got shape {:?}",
                self.shape
            ))),
        }
    }

    /// Row `i` of a 2-D tensor.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let (r, c) = self.dims2().ok()?;
        (i < r).then(|| &self.data[i * c..(i + 1) * c])
    }

    /// Moves into an `ndarray` array (no copy of the values).
    pub fn into_ndarray(self) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.data)
            .expect("shape and length agree by construction")
    }

    /// Copies the values of any `ndarray` array, in logical row-major order.
    pub fn from_ndarray(array: &ArrayD<f32>) -> Self {
        let shape = array.shape().to_vec();
        let data = match array.as_slice() {
            Some(s) => s.to_vec(),
            None => array.iter().copied().collect(),
        };
        Self { shape, data }
    }
}
