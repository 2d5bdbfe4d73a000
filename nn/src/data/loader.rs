//! [`DataLoader`]: batches over a dataset, shuffled by a seed and the epoch
//! number, produced ahead of time on a background thread.

use super::{Batch, Dataset};
use oar_tensor::{Error, Generator, Result};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Settings of a [`DataLoader`] (PyTorch's arguments, `prefetch` batches
/// prepared ahead on one worker thread; 0 prepares them on the caller's thread).
#[derive(Clone, Copy, Debug)]
pub struct DataLoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub drop_last: bool,
    pub prefetch: usize,
}

impl DataLoaderConfig {
    pub fn new(batch_size: usize) -> Self {
        DataLoaderConfig { batch_size, shuffle: false, seed: 0, drop_last: false, prefetch: 2 }
    }
    /// Shuffles every epoch; the order depends only on `seed` and the epoch
    /// number, so a resumed run sees the same batches as an uninterrupted one.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = true;
        self.seed = seed;
        self
    }
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }
    pub fn prefetch(mut self, batches: usize) -> Self {
        self.prefetch = batches;
        self
    }
}

/// Batches over a dataset.
///
/// ```
/// use oar_nn::data::{DataLoader, DataLoaderConfig, TensorDataset};
/// use oar_tensor::{DType, Device, Tensor};
/// # fn main() -> oar_tensor::Result<()> {
/// let dev = Device::cpu();
/// let x = Tensor::arange(0.0, 10.0, 1.0, DType::F32, &dev)?.reshape([10, 1])?;
/// let y = Tensor::arange(0.0, 10.0, 1.0, DType::I64, &dev)?;
/// let loader = DataLoader::new(TensorDataset::new(x, y)?, DataLoaderConfig::new(4).shuffle(7))?;
/// let mut seen = Vec::new();
/// for batch in loader.epoch(0) {
///     seen.extend(batch?.targets.to_vec::<i64>()?);
/// }
/// seen.sort();
/// assert_eq!(seen, (0..10).collect::<Vec<i64>>());
/// assert_eq!(loader.len(), 3);
/// # Ok(()) }
/// ```
pub struct DataLoader<D: Dataset + 'static> {
    dataset: Arc<D>,
    cfg: DataLoaderConfig,
}

impl<D: Dataset + 'static> DataLoader<D> {
    pub fn new(dataset: D, cfg: DataLoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(Error::invalid_arg("DataLoader", "batch_size must be positive"));
        }
        Ok(DataLoader { dataset: Arc::new(dataset), cfg })
    }

    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    pub fn config(&self) -> &DataLoaderConfig {
        &self.cfg
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.dataset.len();
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The example order of `epoch`: 0..n, or a Fisher-Yates shuffle seeded
    /// by (seed, epoch).
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let n = self.dataset.len();
        let mut order: Vec<usize> = (0..n).collect();
        if self.cfg.shuffle && n > 1 {
            let seed = self.cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut gen = Generator::new(seed);
            let u = gen.uniform(n);
            for i in (1..n).rev() {
                let j = ((u[i] * (i + 1) as f64) as usize).min(i);
                order.swap(i, j);
            }
        }
        order
    }

    /// The example indices of each batch of `epoch`.
    fn batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let bs = self.cfg.batch_size;
        let mut batches: Vec<Vec<usize>> = self.order(epoch).chunks(bs).map(<[usize]>::to_vec).collect();
        if self.cfg.drop_last && batches.last().is_some_and(|b| b.len() < bs) {
            batches.pop();
        }
        batches
    }

    /// The batches of `epoch`, in order. With `prefetch > 0` a worker
    /// thread prepares up to that many batches ahead.
    pub fn epoch(&self, epoch: usize) -> Epoch {
        let inline = |batches: Vec<Vec<usize>>| {
            let dataset = Arc::clone(&self.dataset);
            let it = batches.into_iter().map(move |b| dataset.get_batch(&b));
            Epoch { inner: Inner::Inline(Box::new(it)), worker: None }
        };
        if self.cfg.prefetch == 0 {
            return inline(self.batches(epoch));
        }
        let (tx, rx) = sync_channel(self.cfg.prefetch);
        let (dataset, batches) = (Arc::clone(&self.dataset), self.batches(epoch));
        let worker = std::thread::Builder::new().name("oar-data".into()).spawn(move || {
            for b in batches {
                let batch = dataset.get_batch(&b);
                let failed = batch.is_err();
                // The receiver hung up (the loop stopped early): stop.
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        match worker {
            Ok(w) => Epoch { inner: Inner::Worker(rx), worker: Some(w) },
            // No thread could be started: produce the batches on this thread.
            Err(_) => inline(self.batches(epoch)),
        }
    }
}

enum Inner {
    Inline(Box<dyn Iterator<Item = Result<Batch>> + Send>),
    Worker(Receiver<Result<Batch>>),
}

/// The batches of one epoch (an iterator of `Result<Batch>`).
pub struct Epoch {
    inner: Inner,
    worker: Option<JoinHandle<()>>,
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        match &mut self.inner {
            Inner::Inline(it) => it.next(),
            Inner::Worker(rx) => match rx.recv() {
                Ok(b) => Some(b),
                Err(_) => {
                    // The worker finished (or panicked): surface a panic as an error.
                    let panicked = self.worker.take().map(|w| w.join().is_err()).unwrap_or(false);
                    panicked.then(|| Err(Error::invalid_arg("DataLoader", "the data worker thread panicked")))
                }
            },
        }
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Hang up first so a worker blocked on a full channel stops.
        self.inner = Inner::Inline(Box::new(std::iter::empty()));
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
