use crate::module::{Forward, Module, Visitor};
use crate::param::Param;
use oar_tensor::{DType, Device, Error, ErrorKind, Result, Tensor};

/// A lookup table (`nn.Embedding(num_embeddings, embedding_dim)`): weight
/// `[num, dim]` drawn from N(0, 1). Input: integer indices of any shape;
/// output: that shape with `dim` appended. With a `padding_idx`, that row
/// starts at zero and gets no gradient (lookups of it return its current
/// value, as PyTorch's).
#[derive(Debug)]
pub struct Embedding {
    pub weight: Param,
    pub padding_idx: Option<usize>,
}

impl Embedding {
    pub fn new(num_embeddings: usize, embedding_dim: usize) -> Result<Embedding> {
        Embedding::with_padding(num_embeddings, embedding_dim, None)
    }

    pub fn with_padding(num_embeddings: usize, embedding_dim: usize, padding_idx: Option<usize>) -> Result<Embedding> {
        if num_embeddings == 0 || embedding_dim == 0 {
            return Err(Error::invalid_arg("Embedding", "num_embeddings and embedding_dim must be positive"));
        }
        if let Some(p) = padding_idx.filter(|&p| p >= num_embeddings) {
            return Err(Error::invalid_arg(
                "Embedding",
                format!("padding_idx {p} out of range for {num_embeddings} embeddings"),
            ));
        }
        let dev = Device::cpu();
        let mut w = Tensor::randn([num_embeddings, embedding_dim], DType::F32, &dev)?;
        if let Some(p) = padding_idx {
            let rows =
                Tensor::arange(0.0, num_embeddings as f64, 1.0, DType::I64, &dev)?.reshape([num_embeddings, 1])?;
            w = w.masked_fill(&rows.eq_scalar(p as f64)?, 0.0)?;
        }
        Ok(Embedding { weight: Param::new(w)?, padding_idx })
    }

    /// A table with the given `[num, dim]` weight.
    pub fn from_weight(weight: Tensor) -> Result<Embedding> {
        if weight.rank() != 2 {
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op: "Embedding",
                shapes: vec![weight.shape().clone()],
                msg: "weight must be [num_embeddings, embedding_dim]".into(),
            }));
        }
        Ok(Embedding { weight: Param::new(weight)?, padding_idx: None })
    }
}

impl Module for Embedding {
    fn visit(&self, v: &mut Visitor<'_>) {
        v.child("weight", &self.weight);
    }
}

impl Forward for Embedding {
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        if !matches!(idx.dtype(), DType::I64 | DType::I32) {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "Embedding",
                dtype: idx.dtype(),
                msg: "indices must be i64 or i32",
            }));
        }
        let w = self.weight.get();
        let num = w.dims()[0];
        let flat = idx.reshape([idx.numel()])?;
        let rows = w.index_select(0, &flat).map_err(|e| match *e.kind() {
            ErrorKind::IndexOutOfRange { index, .. } => Error::invalid_arg(
                "Embedding",
                format!("index {index} out of range for {num} embeddings (valid: 0..{num})"),
            ),
            _ => e,
        })?;
        let rows = match self.padding_idx {
            // Rows looked up at the padding index keep the table's value (as
            // PyTorch returns it, zero only while that row is zero) but come
            // from a detached copy, so no gradient reaches that row.
            Some(p) => flat.eq_scalar(p as f64)?.unsqueeze(1)?.where_cond(&rows.detach(), &rows)?,
            None => rows,
        };
        let mut shape = idx.dims().to_vec();
        shape.push(w.dims()[1]);
        rows.reshape(shape)
    }
}
