//! Losses: functional forms and the modules that hold their options.
//!
//! Each is written with ordinary tensor ops (so autograd and the jit see
//! through it) in a numerically stable form: cross-entropy goes through
//! `log_softmax`, binary cross-entropy through the log-sum-exp identity.

use oar_tensor::{DType, Error, ErrorKind, Result, Tensor};

/// How per-element losses are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// One loss per element, in the target's shape.
    None,
    /// The (weighted) mean: PyTorch's default.
    #[default]
    Mean,
    Sum,
}

fn reduce(loss: Tensor, reduction: Reduction) -> Result<Tensor> {
    match reduction {
        Reduction::None => Ok(loss),
        Reduction::Mean => loss.mean_all(),
        Reduction::Sum => loss.sum_all(),
    }
}

/// Options of [`cross_entropy`] and [`nll_loss`] (PyTorch's keyword arguments).
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyOptions {
    /// A weight per class (`[C]`), scaling each target's loss.
    pub weight: Option<Tensor>,
    pub reduction: Reduction,
    /// Mixes the one-hot target with the uniform distribution: the target
    /// class gets `1 - s + s / C`, every other class `s / C`. In [0, 1].
    pub label_smoothing: f64,
    /// Targets equal to this contribute no loss and no gradient, and are left
    /// out of the mean. (PyTorch's default is -100; here it is off unless set.)
    pub ignore_index: Option<i64>,
}

fn check_target(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    if !matches!(target.dtype(), DType::I64 | DType::I32) {
        return Err(Error::from(ErrorKind::UnsupportedDType {
            op,
            dtype: target.dtype(),
            msg: "class-index targets must be i64 or i32 (probability targets must match the input's shape and dtype)",
        }));
    }
    // Input [N, C, d...] (or [C]); target [N, d...] (or []).
    let mut expected = input.dims().to_vec();
    let ok = if input.rank() == 1 {
        target.rank() == 0
    } else if input.rank() >= 2 {
        expected.remove(1);
        target.dims() == expected.as_slice()
    } else {
        false
    };
    if !ok {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op,
            shapes: vec![input.shape().clone(), target.shape().clone()],
            msg: "expected input [N, C, d...] with target [N, d...] of class indices".into(),
        }));
    }
    Ok(())
}

/// Renames a gather's index error as the loss's own: which target, how many classes.
fn target_error(op: &'static str, classes: usize) -> impl Fn(Error) -> Error {
    move |e| match *e.kind() {
        ErrorKind::IndexOutOfRange { index, .. } => Error::invalid_arg(
            op,
            format!("target {index} is out of range for {classes} classes (valid: 0..{classes})"),
        ),
        _ => e,
    }
}

/// Negative log-likelihood of `log_probs` (`[N, C, d...]`, the output of
/// `log_softmax(1)`) at class-index `target` (`[N, d...]`).
pub fn nll_loss(log_probs: &Tensor, target: &Tensor, options: &CrossEntropyOptions) -> Result<Tensor> {
    class_loss("nll_loss", log_probs, target, options, 0.0)
}

/// Cross-entropy between `logits` (`[N, C, d...]`, unnormalized) and `target`:
/// class indices `[N, d...]` (i64/i32), or class probabilities of the
/// logits' shape and dtype. Computed as `log_softmax` then the negative
/// log-likelihood, so large logits do not overflow.
///
/// ```
/// use oar_nn::loss::{cross_entropy, CrossEntropyOptions};
/// use oar_tensor::{Device, Result, Tensor};
/// # fn main() -> Result<()> {
/// let dev = Device::cpu();
/// let logits = Tensor::from_vec(vec![2.0f32, 0.0, 0.0, 0.0, 3.0, 0.0], [2, 3], &dev)?;
/// let target = Tensor::from_vec(vec![0i64, 1], [2], &dev)?;
/// let loss = cross_entropy(&logits, &target, &CrossEntropyOptions::default())?;
/// // -log softmax at the target: log(1 + 2 e^-2) and log(1 + 2 e^-3).
/// let expected = ((1.0 + 2.0 * (-2f64).exp()).ln() + (1.0 + 2.0 * (-3f64).exp()).ln()) / 2.0;
/// assert!((loss.item()? - expected).abs() < 1e-6);
/// # Ok(()) }
/// ```
pub fn cross_entropy(logits: &Tensor, target: &Tensor, options: &CrossEntropyOptions) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&options.label_smoothing) {
        return Err(Error::invalid_arg(
            "cross_entropy",
            format!("label_smoothing must be in [0, 1], got {}", options.label_smoothing),
        ));
    }
    if logits.rank() == 0 {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op: "cross_entropy",
            shapes: vec![logits.shape().clone(), target.shape().clone()],
            msg: "expected logits [N, C, d...] or [C]".into(),
        }));
    }
    let class_dim = if logits.rank() == 1 { 0 } else { 1 };
    let log_probs = logits.log_softmax(class_dim)?;
    if target.dtype().is_float() {
        return soft_target_loss(&log_probs, target, options, class_dim);
    }
    class_loss("cross_entropy", &log_probs, target, options, options.label_smoothing)
}

/// The loss against class indices, with optional class weights, label
/// smoothing and an ignored index.
fn class_loss(
    op: &'static str,
    log_probs: &Tensor,
    target: &Tensor,
    options: &CrossEntropyOptions,
    smoothing: f64,
) -> Result<Tensor> {
    check_target(op, log_probs, target)?;
    let class_dim = if log_probs.rank() == 1 { 0 } else { 1 };
    let classes = log_probs.dims()[class_dim];
    if let Some(w) = &options.weight {
        if w.dims() != [classes] || w.dtype() != log_probs.dtype() {
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op,
                shapes: vec![log_probs.shape().clone(), w.shape().clone()],
                msg: format!("weight must be [{classes}] of dtype {}", log_probs.dtype()),
            }));
        }
    }
    let target = target.to_dtype(DType::I64)?;
    // Ignored targets are looked up at class 0 (any valid index) and masked out.
    let keep = match options.ignore_index {
        Some(ig) => Some(target.ne_scalar(ig as f64)?),
        None => None,
    };
    let lookup = match &keep {
        Some(k) => k.where_cond(&target, &Tensor::zeros((), DType::I64, target.device())?)?,
        None => target.clone(),
    };
    let picked = log_probs
        .gather(class_dim, &lookup.unsqueeze(class_dim)?)
        .map_err(target_error(op, classes))?
        .squeeze(class_dim)?;
    // Per-target weight (the class weight of its target, 0 when ignored).
    let mut sample_w = match &options.weight {
        Some(w) => Some(w.index_select(0, &lookup.reshape([lookup.numel()])?)?.reshape(lookup.shape().clone())?),
        None => None,
    };
    if let Some(k) = &keep {
        let k = k.to_dtype(log_probs.dtype())?;
        sample_w = Some(match sample_w {
            Some(w) => w.mul(&k)?,
            None => k,
        });
    }
    let mut loss = picked.neg()?;
    if smoothing > 0.0 {
        // The uniform part: the mean over classes of -log p (class-weighted).
        let all = match &options.weight {
            Some(w) => {
                let mut shape = vec![1; log_probs.rank()];
                shape[class_dim] = classes;
                log_probs.mul(&w.reshape(shape)?)?
            }
            None => log_probs.clone(),
        };
        let uniform = all.sum(class_dim, false)?.neg()?.div_scalar(classes as f64)?;
        let nll = match &sample_w {
            Some(w) => loss.mul(w)?,
            None => loss,
        };
        let uniform = match &keep {
            Some(k) => uniform.mul(&k.to_dtype(log_probs.dtype())?)?,
            None => uniform,
        };
        loss = nll.mul_scalar(1.0 - smoothing)?.add(&uniform.mul_scalar(smoothing)?)?;
    } else if let Some(w) = &sample_w {
        loss = loss.mul(w)?;
    }
    match (options.reduction, &sample_w) {
        // The weighted mean divides by the total weight of the counted targets.
        (Reduction::Mean, Some(w)) => loss.sum_all()?.div(&w.sum_all()?),
        (r, _) => reduce(loss, r),
    }
}

/// Cross-entropy against class probabilities (`target` shaped as the logits).
fn soft_target_loss(
    log_probs: &Tensor,
    target: &Tensor,
    options: &CrossEntropyOptions,
    class_dim: usize,
) -> Result<Tensor> {
    if target.shape() != log_probs.shape() || target.dtype() != log_probs.dtype() {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op: "cross_entropy",
            shapes: vec![log_probs.shape().clone(), target.shape().clone()],
            msg: "probability targets must have the logits' shape and dtype".into(),
        }));
    }
    if options.ignore_index.is_some() {
        return Err(Error::invalid_arg("cross_entropy", "ignore_index applies to class-index targets only"));
    }
    let classes = log_probs.dims()[class_dim];
    let s = options.label_smoothing;
    let target = if s > 0.0 { target.mul_scalar(1.0 - s)?.add_scalar(s / classes as f64)? } else { target.clone() };
    let mut prod = log_probs.mul(&target)?;
    if let Some(w) = &options.weight {
        let mut shape = vec![1; log_probs.rank()];
        shape[class_dim] = classes;
        prod = prod.mul(&w.reshape(shape)?)?;
    }
    let loss = prod.sum(class_dim, false)?.neg()?;
    // PyTorch's mean over probability targets divides by the batch size (not weights).
    reduce(loss, options.reduction)
}

fn check_same_shape(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    if input.shape() != target.shape() {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op,
            shapes: vec![input.shape().clone(), target.shape().clone()],
            msg: "input and target must have the same shape".into(),
        }));
    }
    if input.dtype() != target.dtype() {
        return Err(Error::from(ErrorKind::DTypeMismatch { op, expected: input.dtype(), got: target.dtype() }));
    }
    Ok(())
}

/// Mean squared error, `(input - target)^2` reduced.
pub fn mse_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check_same_shape("mse_loss", input, target)?;
    reduce(input.sub(target)?.square()?, reduction)
}

/// Mean absolute error, `|input - target|` reduced.
pub fn l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check_same_shape("l1_loss", input, target)?;
    reduce(input.sub(target)?.abs()?, reduction)
}

/// Binary cross-entropy on logits: `-[y log s(x) + (1 - y) log(1 - s(x))]`,
/// computed as `(1 - y) x + log(1 + exp(-x))` with the softplus evaluated at a
/// non-positive argument, so no exp overflows.
/// `pos_weight` (broadcast over the last dim, as PyTorch) scales the
/// positive term; `weight` (broadcast) scales each element.
pub fn binary_cross_entropy_with_logits(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    check_same_shape("binary_cross_entropy_with_logits", input, target)?;
    // -log s(x) = log(1 + exp(-x)) = softplus(-x), evaluated where its argument is <= 0
    // (softplus(-x) for x >= 0, softplus(x) - x otherwise) so no exp overflows and the
    // gradient is exact everywhere. (The form max(-x, 0) + softplus(-|x|) has the same
    // value but a zero subgradient of relu/abs at x = 0, where the true gradient is -1/2:
    // zero-initialized logits got the wrong gradient.)
    let neg_log_sigmoid =
        input.ge_scalar(0.0)?.where_cond(&input.neg()?.softplus()?, &input.softplus()?.sub(input)?)?;
    let one_minus_y = target.neg()?.add_scalar(1.0)?;
    // (1 - y) x + (1 + (pw - 1) y) softplus(-x), as PyTorch (pw = 1 without pos_weight).
    let positive = match pos_weight {
        None => neg_log_sigmoid,
        Some(pw) => pw.sub_scalar(1.0)?.mul(target)?.add_scalar(1.0)?.mul(&neg_log_sigmoid)?,
    };
    let loss = one_minus_y.mul(input)?.add(&positive)?;
    let loss = match weight {
        Some(w) => loss.mul(w)?,
        None => loss,
    };
    reduce(loss, reduction)
}

/// `nn.CrossEntropyLoss`.
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyLoss(pub CrossEntropyOptions);

impl CrossEntropyLoss {
    pub fn new() -> Self {
        CrossEntropyLoss::default()
    }
    pub fn label_smoothing(mut self, s: f64) -> Self {
        self.0.label_smoothing = s;
        self
    }
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.0.reduction = r;
        self
    }
    pub fn weight(mut self, w: Tensor) -> Self {
        self.0.weight = Some(w);
        self
    }
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.0.ignore_index = Some(i);
        self
    }
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Result<Tensor> {
        cross_entropy(logits, target, &self.0)
    }
}

/// `nn.NLLLoss`.
#[derive(Clone, Debug, Default)]
pub struct NLLLoss(pub CrossEntropyOptions);

impl NLLLoss {
    pub fn new() -> Self {
        NLLLoss::default()
    }
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.0.reduction = r;
        self
    }
    pub fn weight(mut self, w: Tensor) -> Self {
        self.0.weight = Some(w);
        self
    }
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.0.ignore_index = Some(i);
        self
    }
    pub fn forward(&self, log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
        nll_loss(log_probs, target, &self.0)
    }
}

/// `nn.MSELoss`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MSELoss(pub Reduction);

impl MSELoss {
    pub fn new() -> Self {
        MSELoss::default()
    }
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        mse_loss(input, target, self.0)
    }
}

/// `nn.L1Loss`.
#[derive(Clone, Copy, Debug, Default)]
pub struct L1Loss(pub Reduction);

impl L1Loss {
    pub fn new() -> Self {
        L1Loss::default()
    }
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        l1_loss(input, target, self.0)
    }
}

/// `nn.BCEWithLogitsLoss`.
#[derive(Clone, Debug, Default)]
pub struct BCEWithLogitsLoss {
    pub weight: Option<Tensor>,
    pub pos_weight: Option<Tensor>,
    pub reduction: Reduction,
}

impl BCEWithLogitsLoss {
    pub fn new() -> Self {
        BCEWithLogitsLoss::default()
    }
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        binary_cross_entropy_with_logits(input, target, self.weight.as_ref(), self.pos_weight.as_ref(), self.reduction)
    }
}
