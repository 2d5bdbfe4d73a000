use oar_tensor::*;

#[test]
fn smoke() -> Result<()> {
    let dev = Device::cpu();
    let a = Tensor::arange(0.0, 6.0, 1.0, DType::F32, &dev)?.reshape([2, 3])?;
    let b = Tensor::ones([3], DType::F32, &dev)?;
    assert_eq!(a.add(&b)?.to_vec::<f32>()?, vec![1., 2., 3., 4., 5., 6.]);
    let at = a.t()?;
    assert!(!at.is_contiguous());
    assert_eq!(at.contiguous()?.to_vec::<f32>()?, vec![0., 3., 1., 4., 2., 5.]);
    let m = at.matmul(&a)?;
    assert_eq!(m.to_vec::<f32>()?, vec![9., 12., 15., 12., 17., 22., 15., 22., 29.]);
    assert_eq!(a.sum(1, false)?.to_vec::<f32>()?, vec![3., 12.]);
    assert_eq!(a.sum(0, true)?.to_vec::<f32>()?, vec![3., 5., 7.]);
    assert_eq!(at.sum(0, false)?.to_vec::<f32>()?, vec![3., 12.]);
    assert_eq!(a.argmax(1, false)?.to_vec::<i64>()?, vec![2, 2]);
    let x = Tensor::ones([1, 1, 4, 4], DType::F32, &dev)?;
    let w = Tensor::ones([2, 1, 3, 3], DType::F32, &dev)?;
    let y = x.conv2d(&w, None, &Conv2dParams { padding: [1, 1], ..Default::default() })?;
    assert_eq!(y.dims(), &[1, 2, 4, 4]);
    assert_eq!(y.to_vec::<f32>()?[..4], [4., 6., 6., 4.]);
    Ok(())
}
