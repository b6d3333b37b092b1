//! `embedding`: the token embedding gather, the table in any format.

use pertoken_gpu::{DType, Gpu, Tensor};
use pertoken_model::ops;
use pertoken_reference::Tolerance;

use super::{Bound, Inputs, Op, Operand, Tol, Which, shape_error, tensor_bytes};
use crate::cli::CliError;
use crate::cli::run::{Args, npy};

/// `out[i] = table[ids[i]]`, the table in any `--dtype`.
pub(super) struct Embedding {
    table: Operand,
    ids_path: String,
    ids_shape: Vec<usize>,
    ids: Vec<u32>,
    d: usize,
}

impl Embedding {
    pub(super) fn new(args: &Args, inputs: &Inputs) -> Result<Embedding, CliError> {
        let table = Operand::new(inputs.need("table")?, args.dtype)?;
        let [vocab, d] = *table.shape() else {
            return Err(shape_error(
                &table,
                "embedding's table must be [V, D] (vocabulary, hidden)",
            ));
        };
        let (path, ids_shape, raw) = inputs.ints("ids")?;
        let ids_path = path.display().to_string();
        if ids_shape.is_empty() {
            return Err(format!(
                "{ids_path}: ids is a 0-d array; give at least a 1-D array of ids"
            )
            .into());
        }
        let mut ids = Vec::with_capacity(raw.len());
        for (i, &id) in raw.iter().enumerate() {
            match u32::try_from(id) {
                Ok(v) if (v as usize) < vocab => ids.push(v),
                _ => {
                    return Err(format!(
                        "{ids_path}: ids holds {id} at {}, not a row of the table's {vocab} (0..{vocab})",
                        npy::at(i, &ids_shape)
                    )
                    .into());
                }
            }
        }
        Ok(Embedding {
            table,
            ids_path,
            ids_shape,
            ids,
            d,
        })
    }
}

impl Op for Embedding {
    fn out_shape(&self) -> Vec<usize> {
        let mut s = self.ids_shape.clone();
        s.push(self.d);
        s
    }

    fn operands(&self) -> Vec<&Operand> {
        vec![&self.table]
    }

    fn bindings(&self) -> Vec<Bound> {
        let ids = Bound {
            what: format!("{} (ids)", self.ids_path),
            shape: self.ids_shape.clone(),
            dtype: DType::U32,
            bytes: tensor_bytes(&self.ids_shape, DType::U32),
            split: false,
        };
        vec![self.table.bound(true), ids, Bound::output(self.out_shape())]
    }

    fn gpu(&self, gpu: &Gpu) -> pertoken_gpu::Result<Vec<f32>> {
        let t = self.ids.len();
        let table = self.table.upload(gpu)?;
        let tokens = Tensor::from_slice(gpu, &self.ids, &[t])?;
        let out = Tensor::zeros(gpu, &[t, self.d], DType::F32)?;
        ops::embed(gpu, &table, &tokens, (0, t), &out, 0)?;
        out.to_vec()
    }

    /// A gather needs no arithmetic: the rows of the table's values (dequantized where
    /// quantized), in f64.
    fn reference(&self, which: Which) -> Result<Vec<f64>, CliError> {
        let table = self.table.values(which);
        Ok(self
            .ids
            .iter()
            .flat_map(|&id| table[id as usize * self.d..][..self.d].to_vec())
            .collect())
    }

    fn tolerance(&self) -> Tol {
        Tol {
            tolerance: Tolerance { abs: 0.0, rel: 0.0 },
            why: "a gather copies rows: exact".into(),
        }
    }
}
