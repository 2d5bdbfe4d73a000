//! Dropout in train mode: the mask's rate, the 1 / (1 - p) scaling, the
//! gradient through the mask, and reproducibility under `manual_seed`.
//!
//! One test in its own binary: the default generator is process-wide, and
//! another test drawing from it in parallel would change the masks.

use oar_autograd::Backward;
use oar_nn::{Dropout, Forward, Module};
use oar_tensor::{manual_seed, DType, Device, Result, Tensor};

#[test]
fn train_mode_drops_at_rate_p_scales_the_rest_and_follows_the_seed() -> Result<()> {
    const N: usize = 100_000;
    let cpu = Device::cpu();
    let x = Tensor::ones([N], DType::F32, &cpu)?.with_requires_grad(true)?;
    let mut drop = Dropout::new(0.3)?;

    manual_seed(11);
    let y = drop.forward(&x)?;
    let vals = y.to_vec::<f32>()?;
    let scale = (1.0 / 0.7) as f32;
    assert!(vals.iter().all(|&v| v == 0.0 || v == scale), "every element is 0 or 1 / (1 - p)");
    let zeros = vals.iter().filter(|&&v| v == 0.0).count() as f64 / N as f64;
    // Binomial(N, 0.3): the standard deviation of the rate is 0.00145; allow 5 of them.
    assert!((zeros - 0.3).abs() < 0.0073, "dropped {zeros}");

    // The gradient of sum(y) is the mask times the scale: y itself, for x = 1.
    y.sum_all()?.backward()?;
    assert_eq!(x.grad().expect("a gradient").to_vec::<f32>()?, vals);

    // The same seed gives the same mask; another seed another.
    manual_seed(11);
    assert_eq!(drop.forward(&x)?.to_vec::<f32>()?, vals);
    manual_seed(12);
    assert_ne!(drop.forward(&x)?.to_vec::<f32>()?, vals);

    // f64 inputs stay f64 and scale alike.
    let y64 = drop.forward(&x.to_dtype(DType::F64)?)?;
    assert_eq!(y64.dtype(), DType::F64);
    assert!(y64.to_vec::<f64>()?.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-15));

    // p = 0 and eval mode are the identity, p = 1 drops everything.
    let ramp = Tensor::arange(0.0, 8.0, 1.0, DType::F32, &cpu)?;
    assert_eq!(Dropout::new(0.0)?.forward(&ramp)?.to_vec::<f32>()?, ramp.to_vec::<f32>()?);
    assert_eq!(Dropout::new(1.0)?.forward(&ramp)?.to_vec::<f32>()?, vec![0.0; 8]);
    drop.eval();
    assert_eq!(drop.forward(&ramp)?.to_vec::<f32>()?, ramp.to_vec::<f32>()?);
    assert!(Dropout::new(1.5).is_err() && Dropout::new(-0.1).is_err());
    Ok(())
}
