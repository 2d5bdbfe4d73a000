//! The [`Module`] trait (a tree of named parameters and buffers, train/eval
//! mode), [`Forward`] (what a layer computes) and [`Sequential`].

use crate::param::{Buffer, Param};
use crate::state::{LoadReport, StateDict};
use oar_tensor::{DType, Device, Result, Tensor};

/// One entry a [`Visitor`] is shown.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    Param(&'a Param),
    Buffer(&'a Buffer),
}

/// Walks a module tree, keeping the dotted name of the current position.
/// [`Module::visit`] implementations call [`Visitor::child`] for each field
/// (what `#[derive(Module)]` generates) and [`Visitor::param`] /
/// [`Visitor::buffer`] for the tensors they own.
pub struct Visitor<'a> {
    path: String,
    f: &'a mut dyn FnMut(&str, Entry<'_>),
}

impl<'a> Visitor<'a> {
    /// A visitor calling `f(dotted_name, entry)` for every entry.
    pub fn new(f: &'a mut dyn FnMut(&str, Entry<'_>)) -> Self {
        Visitor { path: String::new(), f }
    }

    /// Visits `module` under the name `name` (appended to the current path).
    pub fn child<M: Module + ?Sized>(&mut self, name: &str, module: &M) {
        let len = self.path.len();
        if len > 0 && !name.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
        module.visit(self);
        self.path.truncate(len);
    }

    /// Reports a parameter at the current path.
    pub fn param(&mut self, p: &Param) {
        (self.f)(&self.path, Entry::Param(p));
    }

    /// Reports a buffer at the current path.
    pub fn buffer(&mut self, b: &Buffer) {
        (self.f)(&self.path, Entry::Buffer(b));
    }
}

/// A node of a model: it owns named parameters and buffers (directly or
/// through child modules) and has a train/eval mode.
///
/// Implement it with `#[derive(Module)]` on a struct whose fields are layers,
/// [`Param`]s, [`Buffer`]s, `Option`s or `Vec`s of those; a field that is
/// none of these (a config value) is marked `#[module(skip)]`.
///
/// ```
/// use oar_nn::{Forward, Linear, Module};
/// use oar_tensor::{Result, Tensor};
///
/// #[derive(Module)]
/// struct Mlp {
///     fc1: Linear,
///     fc2: Linear,
/// }
///
/// impl Forward for Mlp {
///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
///         self.fc2.forward(&self.fc1.forward(x)?.relu()?)
///     }
/// }
///
/// # fn main() -> Result<()> {
/// let mlp = Mlp { fc1: Linear::new(4, 8)?, fc2: Linear::new(8, 2)? };
/// let names: Vec<String> = mlp.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
/// assert_eq!(mlp.num_parameters(), 4 * 8 + 8 + 8 * 2 + 2);
/// # Ok(()) }
/// ```
pub trait Module {
    /// Shows every parameter and buffer to `visitor`, children in field order.
    fn visit(&self, visitor: &mut Visitor<'_>);

    /// Switches train (`true`) or eval mode, here and in every child.
    /// Layers without a mode ignore it.
    fn set_training(&mut self, training: bool) {
        let _ = training;
    }

    /// Train mode: dropout drops, batch norm uses and updates batch statistics.
    fn train(&mut self) {
        self.set_training(true)
    }

    /// Eval mode: dropout is the identity, batch norm uses running statistics.
    fn eval(&mut self) {
        self.set_training(false)
    }

    /// Every parameter with its dotted name, in declaration order.
    fn named_parameters(&self) -> Vec<(String, Param)> {
        let mut out = Vec::new();
        self.visit(&mut Visitor::new(&mut |name, e| {
            if let Entry::Param(p) = e {
                out.push((name.to_string(), p.clone()));
            }
        }));
        out
    }

    /// Every parameter, in declaration order (what optimizers take).
    fn parameters(&self) -> Vec<Param> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// Every buffer with its dotted name.
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        let mut out = Vec::new();
        self.visit(&mut Visitor::new(&mut |name, e| {
            if let Entry::Buffer(b) = e {
                out.push((name.to_string(), b.clone()));
            }
        }));
        out
    }

    /// Number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Param::numel).sum()
    }

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Parameters and buffers by dotted name (PyTorch's `state_dict()`), in
    /// declaration order.
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        self.visit(&mut Visitor::new(&mut |name, e| {
            let t = match e {
                Entry::Param(p) => p.get().detach(),
                Entry::Buffer(b) => b.get(),
            };
            sd.insert(name, t);
        }));
        sd
    }

    /// Copies `state` into the parameters and buffers. Every problem is
    /// collected: a wrong shape or dtype is always an error; missing and
    /// unexpected keys are errors when `strict`, and reported otherwise.
    /// Values are converted to each parameter's device.
    fn load_state_dict(&self, state: &StateDict, strict: bool) -> Result<LoadReport> {
        crate::state::load_into(self, state, strict)
    }

    /// Writes the state dict to a safetensors file (PyTorch key names), atomically.
    fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()>
    where
        Self: Sized,
    {
        crate::checkpoint::save_safetensors(path, &self.state_dict(), None)
    }

    /// Loads a safetensors state dict (as written by [`Module::save`] or by
    /// PyTorch's `safetensors.torch.save_file(model.state_dict(), path)`).
    fn load(&self, path: impl AsRef<std::path::Path>, strict: bool) -> Result<LoadReport>
    where
        Self: Sized,
    {
        let (sd, _) = crate::checkpoint::load_safetensors(path)?;
        self.load_state_dict(&sd, strict)
    }

    /// Moves every parameter and buffer to `device`.
    fn to_device(&self, device: &Device) -> Result<()> {
        let mut result = Ok(());
        self.visit(&mut Visitor::new(&mut |_, e| {
            if result.is_ok() {
                result = match e {
                    Entry::Param(p) => p.to_device(device),
                    Entry::Buffer(b) => b.to_device(device),
                };
            }
        }));
        result
    }

    /// Casts every floating-point parameter and buffer to `dtype` (integer
    /// buffers such as `num_batches_tracked` keep theirs).
    fn to_dtype(&self, dtype: DType) -> Result<()> {
        let mut result = Ok(());
        self.visit(&mut Visitor::new(&mut |_, e| {
            if result.is_err() {
                return;
            }
            result = match e {
                Entry::Param(p) => p.get().to_dtype(dtype).and_then(|t| p.replace(&t)),
                Entry::Buffer(b) => {
                    let t = b.get();
                    if t.dtype().is_float() {
                        t.to_dtype(dtype).map(|t| b.replace(&t))
                    } else {
                        Ok(())
                    }
                }
            };
        }));
        result
    }
}

/// What a layer computes from one input.
pub trait Forward {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// A module with a forward pass, usable as a trait object ([`Sequential`]
/// holds these). Every `Module + Forward + Send + Sync` type is one.
pub trait Layer: Module + Forward + Send + Sync {}
impl<T: Module + Forward + Send + Sync> Layer for T {}

impl Module for Param {
    fn visit(&self, visitor: &mut Visitor<'_>) {
        visitor.param(self)
    }
}

impl Module for Buffer {
    fn visit(&self, visitor: &mut Visitor<'_>) {
        visitor.buffer(self)
    }
}

impl<M: Module> Module for Option<M> {
    fn visit(&self, visitor: &mut Visitor<'_>) {
        if let Some(m) = self {
            m.visit(visitor)
        }
    }
    fn set_training(&mut self, training: bool) {
        if let Some(m) = self {
            m.set_training(training)
        }
    }
}

/// Elements are named by index, as `nn.ModuleList` (`layers.0.weight`).
impl<M: Module> Module for Vec<M> {
    fn visit(&self, visitor: &mut Visitor<'_>) {
        for (i, m) in self.iter().enumerate() {
            visitor.child(&i.to_string(), m);
        }
    }
    fn set_training(&mut self, training: bool) {
        for m in self {
            m.set_training(training)
        }
    }
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn visit(&self, visitor: &mut Visitor<'_>) {
        (**self).visit(visitor)
    }
    fn set_training(&mut self, training: bool) {
        (**self).set_training(training)
    }
}

impl<M: Forward + ?Sized> Forward for Box<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (**self).forward(x)
    }
}

/// Layers applied in order (`nn.Sequential`); children are named `0`, `1`, ...
///
/// ```
/// use oar_nn::{Forward, Linear, Module, ReLU, Sequential};
/// use oar_tensor::{DType, Device, Result, Tensor};
/// # fn main() -> Result<()> {
/// let net = Sequential::new().add(Linear::new(3, 4)?).add(ReLU).add(Linear::new(4, 1)?);
/// let y = net.forward(&Tensor::ones([2, 3], DType::F32, &Device::cpu())?)?;
/// assert_eq!(y.dims(), &[2, 1]);
/// assert_eq!(net.state_dict().keys(), ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Appends a layer.
    #[allow(clippy::should_implement_trait)] // builder style, as `nn.Sequential(a, b, c)`
    pub fn add(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends an already boxed layer.
    pub fn push(&mut self, layer: Box<dyn Layer>) {
        self.layers.push(layer);
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Layer `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&dyn Layer> {
        self.layers.get(i).map(|l| &**l)
    }
}

impl Module for Sequential {
    fn visit(&self, visitor: &mut Visitor<'_>) {
        self.layers.visit(visitor)
    }
    fn set_training(&mut self, training: bool) {
        self.layers.set_training(training)
    }
}

impl Forward for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }
}
