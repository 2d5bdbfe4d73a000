//! IDX parsing, the bundled MNIST files, and the DataLoader.

use oar_nn::data::{parse_idx, read_idx, DataLoader, DataLoaderConfig, Dataset, Mnist, TensorDataset};
use oar_tensor::{DType, Device, Error, ErrorKind, Result, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};

fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

fn idx_bytes(code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

#[test]
fn idx_types_parse_big_endian() -> Result<()> {
    let p = Path::new("t.idx");
    let t = parse_idx(p, &idx_bytes(0x08, &[2, 3], &[1, 2, 3, 4, 5, 255]))?;
    assert_eq!((t.dims(), t.dtype()), (&[2usize, 3][..], DType::U8));
    assert_eq!(t.to_vec::<u8>()?, vec![1, 2, 3, 4, 5, 255]);
    let t = parse_idx(p, &idx_bytes(0x09, &[2], &[0xff, 0x05]))?;
    assert_eq!(t.to_vec::<i32>()?, vec![-1, 5]);
    let t = parse_idx(p, &idx_bytes(0x0B, &[1], &(-300i16).to_be_bytes()))?;
    assert_eq!(t.to_vec::<i32>()?, vec![-300]);
    let t = parse_idx(p, &idx_bytes(0x0C, &[1], &123456789i32.to_be_bytes()))?;
    assert_eq!(t.to_vec::<i32>()?, vec![123456789]);
    let t = parse_idx(p, &idx_bytes(0x0D, &[1], &1.5f32.to_be_bytes()))?;
    assert_eq!(t.to_vec::<f32>()?, vec![1.5]);
    let t = parse_idx(p, &idx_bytes(0x0E, &[1], &(-2.25f64).to_be_bytes()))?;
    assert_eq!(t.to_vec::<f64>()?, vec![-2.25]);
    let t = parse_idx(p, &idx_bytes(0x08, &[], &[9]))?;
    assert_eq!((t.rank(), t.to_vec::<u8>()?), (0, vec![9]));
    Ok(())
}

#[test]
fn malformed_idx_is_an_error_naming_the_file() {
    let p = Path::new("bad.idx");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0, 0], "too short"),
        (vec![1, 0, 8, 1, 0, 0, 0, 1, 7], "magic"),
        (vec![0, 0, 0x42, 1, 0, 0, 0, 1, 7], "data type"),
        (vec![0, 0, 8, 2, 0, 0, 0, 1], "truncated header"),
        (idx_bytes(0x08, &[2, 3], &[1, 2, 3]), "truncated or padded"),
        (idx_bytes(0x08, &[1], &[1, 2]), "truncated or padded"),
        (idx_bytes(0x0C, &[u32::MAX, u32::MAX, u32::MAX], &[]), "overflow"),
    ];
    for (bytes, needle) in cases {
        let err = parse_idx(p, &bytes).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidFile { .. }) && msg.contains("bad.idx") && msg.contains(needle),
            "{msg}"
        );
    }
}

#[test]
fn gzip_and_plain_files_read_the_same_and_corrupt_gzip_fails() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("oar-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = idx_bytes(0x08, &[4], &[10, 20, 30, 40]);
    std::fs::write(dir.join("plain.idx"), &bytes).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bytes).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(dir.join("packed.idx.gz"), &gz).unwrap();
    assert_eq!(read_idx(dir.join("plain.idx"))?.to_vec::<u8>()?, read_idx(dir.join("packed.idx.gz"))?.to_vec::<u8>()?);
    std::fs::write(dir.join("cut.idx.gz"), &gz[..gz.len() - 6]).unwrap();
    let err = read_idx(dir.join("cut.idx.gz")).unwrap_err().to_string();
    assert!(err.contains("gzip") && err.contains("cut.idx.gz"), "{err}");
    let err = read_idx(dir.join("missing.idx")).unwrap_err().to_string();
    assert!(err.contains("missing.idx"), "{err}");
    Ok(())
}

#[test]
fn bundled_mnist_has_the_published_shape_and_class_counts() -> Result<()> {
    let m = Mnist::load(mnist_dir(), "t10k")?;
    assert_eq!(m.images.dims(), &[10000, 28, 28]);
    let mut counts = [0usize; 10];
    for l in m.labels.to_vec::<u8>()? {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    // The first test digit is a 7 (as in every MNIST tutorial).
    assert_eq!(m.labels.to_vec::<u8>()?[0], 7);
    let ds = m.to_dataset()?;
    assert_eq!(ds.inputs().dims(), &[10000, 1, 28, 28]);
    assert_eq!(ds.targets().dtype(), DType::I64);
    // Normalized pixels: a background pixel is -0.1307 / 0.3081.
    let px = ds.inputs().narrow(0, 0, 1)?.to_vec::<f32>()?[0];
    assert!((px - (-0.1307f32 / 0.3081)).abs() < 1e-6, "{px}");
    // A missing split names what was looked for.
    let err = Mnist::load(mnist_dir(), "train").unwrap_err().to_string();
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    Ok(())
}

fn numbered(n: usize) -> Result<TensorDataset> {
    let dev = Device::cpu();
    let x = Tensor::arange(0.0, n as f64, 1.0, DType::F32, &dev)?.reshape([n, 1])?;
    let y = Tensor::arange(0.0, n as f64, 1.0, DType::I64, &dev)?;
    TensorDataset::new(x, y)
}

fn epoch_targets<D: Dataset>(loader: &DataLoader<D>, epoch: usize) -> Result<Vec<Vec<i64>>> {
    loader.epoch(epoch).map(|b| b.and_then(|b| b.targets.to_vec::<i64>())).collect()
}

#[test]
fn loader_batches_shuffles_by_seed_and_epoch_and_drops_last() -> Result<()> {
    let plain = DataLoader::new(numbered(10)?, DataLoaderConfig::new(4))?;
    assert_eq!(epoch_targets(&plain, 0)?, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    let dropped = DataLoader::new(numbered(10)?, DataLoaderConfig::new(4).drop_last(true))?;
    assert_eq!(dropped.len(), 2);
    assert_eq!(epoch_targets(&dropped, 0)?.len(), 2);
    let a = DataLoader::new(numbered(100)?, DataLoaderConfig::new(16).shuffle(3))?;
    let b = DataLoader::new(numbered(100)?, DataLoaderConfig::new(16).shuffle(3).prefetch(0))?;
    let c = DataLoader::new(numbered(100)?, DataLoaderConfig::new(16).shuffle(4))?;
    let e0 = epoch_targets(&a, 0)?;
    assert_eq!(e0, epoch_targets(&b, 0)?, "prefetching changes nothing");
    assert_eq!(e0, epoch_targets(&a, 0)?, "an epoch's order is reproducible");
    assert_ne!(e0, epoch_targets(&a, 1)?, "epochs differ");
    assert_ne!(e0, epoch_targets(&c, 0)?, "seeds differ");
    let mut all: Vec<i64> = e0.concat();
    assert_ne!(all, (0..100).collect::<Vec<_>>());
    all.sort();
    assert_eq!(all, (0..100).collect::<Vec<_>>(), "a permutation");
    // Inputs travel with their targets.
    for batch in a.epoch(2) {
        let batch = batch?;
        let x: Vec<i64> = batch.inputs.to_vec::<f32>()?.iter().map(|&v| v as i64).collect();
        assert_eq!(x, batch.targets.to_vec::<i64>()?);
    }
    // Stopping early (dropping the epoch) stops the worker.
    let mut it = a.epoch(5);
    assert!(it.next().is_some());
    drop(it);
    Ok(())
}

struct Failing;

impl Dataset for Failing {
    fn len(&self) -> usize {
        8
    }
    fn get(&self, index: usize) -> Result<(Tensor, Tensor)> {
        if index == 5 {
            return Err(Error::invalid_arg("Failing", "example 5 is unreadable"));
        }
        let dev = Device::cpu();
        Ok((Tensor::full([2], index as f64, DType::F32, &dev)?, Tensor::scalar(index as i64, &dev)?))
    }
}

#[test]
fn dataset_errors_reach_the_training_loop() -> Result<()> {
    let loader = DataLoader::new(Failing, DataLoaderConfig::new(2))?;
    let results: Vec<_> = loader.epoch(0).collect();
    assert_eq!(results.len(), 3, "the epoch stops at the failing batch");
    assert!(results[0].is_ok() && results[1].is_ok());
    let err = results[2].as_ref().unwrap_err().to_string();
    assert!(err.contains("example 5"), "{err}");
    assert_eq!(results[0].as_ref().unwrap().inputs.dims(), &[2, 2]);
    assert!(DataLoader::new(Failing, DataLoaderConfig::new(0)).is_err());
    assert!(TensorDataset::new(
        Tensor::zeros([3, 2], DType::F32, &Device::cpu())?,
        Tensor::zeros([4], DType::I64, &Device::cpu())?
    )
    .is_err());
    Ok(())
}

/// Counts the examples it hands out.
struct Counting {
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Dataset for Counting {
    fn len(&self) -> usize {
        10
    }
    fn get(&self, index: usize) -> Result<(Tensor, Tensor)> {
        self.served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let cpu = Device::cpu();
        Ok((Tensor::full([1], index as f64, DType::F32, &cpu)?, Tensor::scalar(index as i64, &cpu)?))
    }
}

#[test]
fn prefetch_prepares_batches_ahead_on_a_worker_and_stays_bounded() -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    for prefetch in [0, 1, 3] {
        let served = Arc::new(AtomicUsize::new(0));
        let cfg = DataLoaderConfig::new(1).prefetch(prefetch);
        let loader = DataLoader::new(Counting { served: Arc::clone(&served) }, cfg)?;
        let mut epoch = loader.epoch(0);
        assert_eq!(epoch.next().expect("a batch")?.targets.to_vec::<i64>()?, [0]);
        // The worker fills the channel (`prefetch` batches) and prepares one
        // more, which waits for room: 1 + prefetch + 1 served once it settles.
        let want = if prefetch == 0 { 1 } else { prefetch + 2 };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while served.load(Ordering::SeqCst) < want && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(served.load(Ordering::SeqCst), want, "prefetch {prefetch}: examples prepared after one batch");
        let rest: Vec<i64> =
            epoch.map(|b| b.and_then(|b| b.targets.to_vec::<i64>()).map(|v| v[0])).collect::<Result<_>>()?;
        assert_eq!(rest, (1..10).collect::<Vec<i64>>(), "in order");
    }
    Ok(())
}
