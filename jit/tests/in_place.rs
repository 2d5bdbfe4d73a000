//! The executor runs element-wise steps over the buffer of an input that
//! dies there, and never over a buffer anyone else can see.

mod common;

use common::randn;
use oar_jit::passes::{optimize, OptLevel};
use oar_jit::{trace, Graph, Plan};
use oar_tensor::{Result, Tensor};

fn graph(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Vec<Tensor>>) -> Graph {
    let mut g = trace(std::slice::from_ref(x), &[], |xs| f(&xs[0])).unwrap();
    optimize(&mut g, OptLevel::O2).unwrap();
    g
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_last_reader_overwrites_a_value_with_other_readers() {
    let x = randn(&[6, 9]);
    // `a` has two readers, so nothing fuses into the op making it; the
    // subtraction, its last reader, writes into its buffer (the exp is the
    // subtraction's fused epilogue), and so does the division by the sum.
    let body = |x: &Tensor| -> Result<Vec<Tensor>> {
        let a = x.mul_scalar(3.0)?.tanh()?;
        let e = a.sub(&a.max(1, true)?)?.exp()?;
        Ok(vec![e.div(&e.sum(1, true)?)?])
    };
    let g = graph(&x, body);
    let plan = Plan::new(g.clone()).unwrap();
    assert_eq!(plan.in_place_steps(), 2, "\n{g}");
    let eager = body(&x).unwrap();
    for _ in 0..3 {
        assert_eq!(bits(&plan.run(std::slice::from_ref(&x)).unwrap()[0]), bits(&eager[0]));
    }
}

#[test]
fn inputs_outputs_and_values_read_again_are_never_overwritten() {
    let x = randn(&[4, 5]);
    let before = bits(&x);
    // `x` is the caller's: its last reader, the subtraction, takes a fresh buffer.
    let g = graph(&x, |x| Ok(vec![x.sub(&x.mean(1, true)?)?]));
    let plan = Plan::new(g).unwrap();
    assert_eq!(plan.in_place_steps(), 0);
    let out = plan.run(std::slice::from_ref(&x)).unwrap();
    assert_eq!(bits(&x), before);
    assert_eq!(bits(&out[0]), bits(&x.sub(&x.mean(1, true).unwrap()).unwrap()));
    // `a` is an output as well as the subtraction's input: it stays.
    let g = graph(&x, |x| {
        let a = x.exp()?;
        Ok(vec![a.sub(&a.sum(0, true)?)?, a])
    });
    let plan = Plan::new(g).unwrap();
    assert_eq!(plan.in_place_steps(), 0);
    let out = plan.run(std::slice::from_ref(&x)).unwrap();
    assert_eq!(bits(&out[1]), bits(&x.exp().unwrap()));
    // `a * a` reads its input twice: not in place.
    let g = graph(&x, |x| {
        let a = x.exp()?;
        let s = a.sum(1, true)?;
        Ok(vec![a.mul(&a)?.add(&s)?])
    });
    assert_eq!(Plan::new(g).unwrap().in_place_steps(), 0);
}

#[test]
fn plans_shared_by_threads_overwrite_only_their_own_buffers() {
    let x = randn(&[32, 64]);
    let body = |x: &Tensor| -> Result<Vec<Tensor>> {
        let a = x.sin()?;
        Ok(vec![a.sub(&a.mean(1, true)?)?.relu()?])
    };
    let plan = Plan::new(graph(&x, body)).unwrap();
    assert_eq!(plan.in_place_steps(), 1);
    let want = bits(&body(&x).unwrap()[0]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20 {
                    assert_eq!(bits(&plan.run(std::slice::from_ref(&x)).unwrap()[0]), want);
                }
            });
        }
    });
}
