//! The Predictor: serving a saved model, in the shape of Paddle Inference
//! (`Config`, input handles, `run`, output handles) with Rust naming.

use crate::batch::{specialize, BatchSpec};
use crate::exec::Plan;
use crate::format;
use crate::graph::Graph;
use crate::passes::{optimize, OptLevel};
use oar_tensor::{Device, Error, ErrorKind, Result, Shape, Tensor, WithDType};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

/// How to build a [`Predictor`].
#[derive(Clone, Debug)]
pub struct Config {
    pub model_dir: PathBuf,
    /// CPU threads for kernels (`None`: keep the process setting).
    pub threads: Option<usize>,
    pub device: Device,
    /// Passes run on the loaded graph (a saved graph is usually optimized
    /// already; running them again is cheap and changes nothing then).
    pub opt_level: OptLevel,
}

impl Config {
    /// A CPU configuration for the model saved in `model_dir`.
    pub fn new(model_dir: impl AsRef<Path>) -> Config {
        Config {
            model_dir: model_dir.as_ref().to_path_buf(),
            threads: None,
            device: Device::cpu(),
            opt_level: OptLevel::O2,
        }
    }

    pub fn with_threads(mut self, threads: usize) -> Config {
        self.threads = Some(threads);
        self
    }

    pub fn with_device(mut self, device: Device) -> Config {
        self.device = device;
        self
    }

    pub fn with_opt_level(mut self, level: OptLevel) -> Config {
        self.opt_level = level;
        self
    }
}

/// Runs a saved model. `Send`; cloning is cheap and shares the compiled plan
/// and its weights, so each serving thread takes its own clone.
///
/// ```no_run
/// use oar_jit::{Config, Predictor};
/// # fn main() -> oar_tensor::Result<()> {
/// let mut predictor = Predictor::new(&Config::new("out/mnist_model").with_threads(1))?;
/// let image = vec![0.0f32; 28 * 28];
/// predictor.input("input0")?.copy_from_cpu(&image)?;
/// predictor.run()?;
/// let logits: Vec<f32> = predictor.output(0)?.copy_to_cpu()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Predictor {
    /// The plan of the current batch size.
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    device: Device,
    inputs: Vec<Option<Tensor>>,
    outputs: Vec<Tensor>,
}

/// What every clone shares: for a dynamic-batch model, the generic graph and
/// the plans compiled so far, one per batch size.
struct Shared {
    dynamic: Option<(Graph, BatchSpec)>,
    level: OptLevel,
    plans: Mutex<HashMap<usize, Arc<Plan>>>,
}

impl Predictor {
    /// Loads, validates, optimizes and compiles the model `config` names.
    pub fn new(config: &Config) -> Result<Predictor> {
        if let Some(t) = config.threads {
            oar_tensor::set_num_threads(t);
        }
        let mut graph = format::load(&config.model_dir)?;
        if !config.device.is_cpu() {
            for w in &mut graph.weights {
                w.tensor = w.tensor.to_device(&config.device)?;
            }
        }
        let dynamic = graph.batch.clone().map(|spec| (graph.clone(), spec));
        optimize(&mut graph, config.opt_level)?;
        let plan = Plan::new(graph)?;
        let mut plans = HashMap::new();
        if let Some((_, spec)) = &dynamic {
            plans.insert(spec.traced, plan.clone());
        }
        let shared = Shared { dynamic, level: config.opt_level, plans: Mutex::new(plans) };
        Ok(Predictor::with_shared(plan, Arc::new(shared), config.device.clone()))
    }

    /// A predictor over an already compiled plan (fixed shapes).
    pub fn from_plan(plan: Arc<Plan>, device: Device) -> Predictor {
        let shared = Shared { dynamic: None, level: OptLevel::O0, plans: Mutex::new(HashMap::new()) };
        Predictor::with_shared(plan, Arc::new(shared), device)
    }

    fn with_shared(plan: Arc<Plan>, shared: Arc<Shared>, device: Device) -> Predictor {
        let inputs = vec![None; plan.graph().inputs.len()];
        Predictor { plan, shared, device, inputs, outputs: Vec::new() }
    }

    /// Whether the model serves any batch size (see [`crate::batch`]); if
    /// not, only the traced input shapes.
    pub fn dynamic_batch(&self) -> bool {
        self.shared.dynamic.is_some()
    }

    /// Switches to batch size `n` (compiling its plan on first use; clones
    /// share the compiled plans). Inputs set for another size are cleared.
    fn set_batch(&mut self, n: usize) -> Result<()> {
        let Some((graph, spec)) = &self.shared.dynamic else {
            return Err(Error::invalid_arg("Predictor", "the model was saved for a fixed batch size"));
        };
        let mut plans = self.shared.plans.lock().unwrap_or_else(|e| e.into_inner());
        let plan = match plans.get(&n) {
            Some(p) => p.clone(),
            None => {
                let mut g = specialize(graph, spec, n)?;
                optimize(&mut g, self.shared.level)?;
                let p = Plan::new(g)?;
                plans.insert(n, p.clone());
                p
            }
        };
        drop(plans);
        if !Arc::ptr_eq(&plan, &self.plan) {
            self.plan = plan;
            self.inputs.iter_mut().for_each(|i| *i = None);
            self.outputs.clear();
        }
        Ok(())
    }

    pub fn input_names(&self) -> Vec<&str> {
        self.plan.graph().inputs.iter().map(|i| i.name.as_str()).collect()
    }

    /// Output names: `output0`, `output1`, ...
    pub fn output_names(&self) -> Vec<String> {
        (0..self.plan.graph().outputs.len()).map(|i| format!("output{i}")).collect()
    }

    /// The input called `name`.
    pub fn input(&mut self, name: &str) -> Result<InputHandle<'_>> {
        let graph = self.plan.graph();
        let Some(index) = graph.inputs.iter().position(|i| i.name == name) else {
            return Err(Error::invalid_arg(
                "Predictor::input",
                format!("no input `{name}`; the model's inputs are {:?}", self.input_names()),
            ));
        };
        let shape = graph.meta(graph.inputs[index].value).shape.dims().to_vec();
        Ok(InputHandle { predictor: self, index, shape })
    }

    /// Runs the model on the inputs set so far. The previous run's outputs
    /// are dropped first and their buffers serve this run's: after the first
    /// run, every intermediate and output buffer on the CPU comes from the
    /// plan's arena (a `copy_from_cpu` still allocates the input it fills).
    pub fn run(&mut self) -> Result<()> {
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for (slot, input) in self.inputs.iter().zip(&self.plan.graph().inputs) {
            match slot {
                Some(t) => inputs.push(t.clone()),
                None => {
                    let name = &input.name;
                    return Err(Error::invalid_arg("Predictor::run", format!("input `{name}` was never set")));
                }
            }
        }
        // The last run's outputs go back to the plan's arena (unless the
        // caller still holds them), so this run's outputs reuse their buffers.
        self.outputs = self.plan.run_recycling(&inputs, std::mem::take(&mut self.outputs))?;
        Ok(())
    }

    /// Output `index` of the last [`Predictor::run`].
    pub fn output(&self, index: usize) -> Result<OutputHandle<'_>> {
        if self.outputs.is_empty() {
            return Err(Error::invalid_arg("Predictor::output", "run() has not succeeded yet"));
        }
        match self.outputs.get(index) {
            Some(tensor) => Ok(OutputHandle { tensor }),
            None => Err(Error::invalid_arg(
                "Predictor::output",
                format!("output {index} does not exist; the model has {}", self.outputs.len()),
            )),
        }
    }

    /// The compiled plan (graph statistics, input metas).
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }
}

/// One input of a [`Predictor`], as Paddle's input tensor handle.
pub struct InputHandle<'a> {
    predictor: &'a mut Predictor,
    index: usize,
    shape: Vec<usize>,
}

impl InputHandle<'_> {
    /// Sets the shape the next copy will have. A dynamic-batch model takes
    /// any first dim (switching the predictor to that batch size); otherwise,
    /// and for the other dims, the shape must be the traced one: an error
    /// here, not at `run`.
    pub fn reshape(&mut self, dims: &[usize]) -> Result<&mut Self> {
        let want = self.declared().clone();
        let only_batch = dims.len() == want.shape.rank()
            && !dims.is_empty()
            && dims[1..] == want.shape.dims()[1..]
            && dims[0] != want.shape.dims()[0];
        if only_batch && self.predictor.dynamic_batch() {
            self.predictor.set_batch(dims[0])?;
        }
        let want = self.declared();
        if dims != want.shape.dims() {
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op: "Predictor::input.reshape",
                shapes: vec![want.shape.clone(), Shape::new(dims)],
                msg: format!(
                    "the model was traced for input `{}` of that first shape{}",
                    self.name(),
                    if self.predictor.dynamic_batch() { " (only the batch size may change)" } else { "" }
                ),
            }));
        }
        self.shape = dims.to_vec();
        Ok(self)
    }

    /// Copies row-major host data in (its length must match the shape and
    /// its element type the input's dtype).
    pub fn copy_from_cpu<T: WithDType>(&mut self, data: &[T]) -> Result<&mut Self> {
        let want = self.declared().clone();
        if T::DTYPE != want.dtype {
            return Err(Error::from(ErrorKind::DTypeMismatch {
                op: "Predictor::input.copy_from_cpu",
                expected: want.dtype,
                got: T::DTYPE,
            }));
        }
        let numel: usize = self.shape.iter().product();
        if data.len() != numel {
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op: "Predictor::input.copy_from_cpu",
                shapes: vec![Shape::new(&self.shape)],
                msg: format!("input `{}` needs {numel} elements, got {}", self.name(), data.len()),
            }));
        }
        let t = Tensor::from_slice(data, self.shape.clone(), &Device::cpu())?.to_device(&self.predictor.device)?;
        self.predictor.inputs[self.index] = Some(t);
        Ok(self)
    }

    /// Sets the input from a tensor of the declared shape and dtype.
    pub fn set(&mut self, tensor: &Tensor) -> Result<&mut Self> {
        let want = self.declared();
        if tensor.meta() != *want {
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op: "Predictor::input.set",
                shapes: vec![want.shape.clone(), tensor.shape().clone()],
                msg: format!(
                    "input `{}` must be {} {:?}, got {}",
                    self.name(),
                    want.dtype,
                    want.shape.dims(),
                    tensor.dtype()
                ),
            }));
        }
        self.predictor.inputs[self.index] = Some(tensor.to_device(&self.predictor.device)?);
        Ok(self)
    }

    fn declared(&self) -> &oar_tensor::op::TensorMeta {
        let g = self.predictor.plan.graph();
        g.meta(g.inputs[self.index].value)
    }

    fn name(&self) -> &str {
        &self.predictor.plan.graph().inputs[self.index].name
    }
}

/// One output of the last run.
pub struct OutputHandle<'a> {
    tensor: &'a Tensor,
}

impl OutputHandle<'_> {
    pub fn shape(&self) -> &[usize] {
        self.tensor.dims()
    }

    pub fn dtype(&self) -> oar_tensor::DType {
        self.tensor.dtype()
    }

    /// The values, row-major, on the host.
    pub fn copy_to_cpu<T: WithDType>(&self) -> Result<Vec<T>> {
        self.tensor.to_vec::<T>()
    }

    /// The output as a tensor (on the predictor's device).
    pub fn tensor(&self) -> &Tensor {
        self.tensor
    }
}

// Predictors move to serving threads.
const _: () = {
    const fn send<T: Send>() {}
    send::<Predictor>()
};
