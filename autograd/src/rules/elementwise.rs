//! VJPs of element-wise ops: unary math, clamp, binary (tensor and scalar), `where`.

use super::{as_float, scalar, sum_to, when, Ctx, Grads};
use oar_tensor::{is_grad_enabled, BinaryOp, Result, Tensor, UnaryOp};
use std::f64::consts::{FRAC_1_SQRT_2, PI};

pub(super) fn unary(op: UnaryOp, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    // Unless this backward pass is itself recorded (create_graph), one fused
    // kernel does what the composite rule below does in two to five ops.
    let zero_grad = matches!(op, UnaryOp::Sign | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round);
    if !is_grad_enabled() && !zero_grad {
        let saved = if op.backward_uses_output() { c.out(0)? } else { x };
        return Ok(vec![Some(g.unary_backward(op, saved)?)]);
    }
    let gx = match op {
        UnaryOp::Neg => g.neg()?,
        UnaryOp::Abs => g.mul(&x.sign()?)?,
        UnaryOp::Exp => g.mul(c.out(0)?)?,
        UnaryOp::Log => g.div(x)?,
        UnaryOp::Sqrt => g.div(&c.out(0)?.mul_scalar(2.0)?)?,
        // d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 out^3
        UnaryOp::Rsqrt => g.mul(&c.out(0)?.pow_scalar(3.0)?.mul_scalar(-0.5)?)?,
        UnaryOp::Sin => g.mul(&x.cos()?)?,
        UnaryOp::Cos => g.mul(&x.sin()?.neg()?)?,
        UnaryOp::Tanh => g.mul(&c.out(0)?.square()?.neg()?.add_scalar(1.0)?)?,
        UnaryOp::Sigmoid => {
            let y = c.out(0)?;
            g.mul(&y.mul(&y.neg()?.add_scalar(1.0)?)?)?
        }
        UnaryOp::Relu => g.mul(&as_float(&x.gt_scalar(0.0)?, x)?)?,
        UnaryOp::Erf => g.mul(&x.square()?.neg()?.exp()?.mul_scalar(2.0 / PI.sqrt())?)?,
        UnaryOp::Gelu => {
            // Phi(x) + x phi(x)
            let cdf = x.mul_scalar(FRAC_1_SQRT_2)?.erf()?.add_scalar(1.0)?.mul_scalar(0.5)?;
            let pdf = x.square()?.mul_scalar(-0.5)?.exp()?.mul_scalar(1.0 / (2.0 * PI).sqrt())?;
            g.mul(&cdf.add(&x.mul(&pdf)?)?)?
        }
        UnaryOp::GeluTanh => {
            let (k, a) = ((2.0 / PI).sqrt(), 0.044715);
            let x2 = x.square()?;
            let t = x.mul(&x2.mul_scalar(a)?.add_scalar(1.0)?)?.mul_scalar(k)?.tanh()?;
            let dinner = x2.mul_scalar(3.0 * a)?.add_scalar(1.0)?.mul_scalar(k)?;
            let left = t.add_scalar(1.0)?.mul_scalar(0.5)?;
            let right = x.mul(&t.square()?.neg()?.add_scalar(1.0)?)?.mul(&dinner)?.mul_scalar(0.5)?;
            g.mul(&left.add(&right)?)?
        }
        UnaryOp::Silu => {
            let s = x.sigmoid()?;
            let inner = x.mul(&s.neg()?.add_scalar(1.0)?)?.add_scalar(1.0)?;
            g.mul(&s.mul(&inner)?)?
        }
        // Linear above PyTorch's threshold of 20, where the forward is `x`.
        UnaryOp::Softplus => x.gt_scalar(20.0)?.where_cond(g, &g.mul(&x.sigmoid()?)?)?,
        UnaryOp::Recip => g.mul(&c.out(0)?.square()?.neg()?)?,
        UnaryOp::Square => g.mul(&x.mul_scalar(2.0)?)?,
        UnaryOp::Sign | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => g.zeros_like()?,
    };
    Ok(vec![Some(gx)])
}

/// Gradient flows where `min <= x <= max` (bounds inclusive, as PyTorch).
pub(super) fn clamp(c: &Ctx<'_>, g: &Tensor, min: Option<f64>, max: Option<f64>) -> Result<Grads> {
    let x = c.x(0);
    let mut gx = g.clone();
    if let Some(lo) = min {
        gx = gx.mul(&as_float(&x.ge_scalar(lo)?, x)?)?;
    }
    if let Some(hi) = max {
        gx = gx.mul(&as_float(&x.le_scalar(hi)?, x)?)?;
    }
    Ok(vec![Some(gx)])
}

pub(super) fn binary(op: BinaryOp, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let (x, y) = (c.x(0), c.x(1));
    let (nx, ny) = (c.needs(0), c.needs(1));
    // The cheap, common ops compute only what is needed.
    let simple = match op {
        BinaryOp::Add => Some((when(nx, || Ok(g.clone()))?, when(ny, || Ok(g.clone()))?)),
        BinaryOp::Sub => Some((when(nx, || Ok(g.clone()))?, when(ny, || g.neg())?)),
        BinaryOp::Mul => Some((when(nx, || g.mul(y))?, when(ny, || g.mul(x))?)),
        _ => None,
    };
    if let Some((gx, gy)) = simple {
        let gx = gx.map(|g| sum_to(&g, x.shape())).transpose()?;
        let gy = gy.map(|g| sum_to(&g, y.shape())).transpose()?;
        return Ok(vec![gx, gy]);
    }
    let (gx, gy) = match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => unreachable!("handled above"),
        BinaryOp::Div => {
            let gx = g.div(y)?;
            (gx.clone(), gx.mul(c.out(0)?)?.neg()?)
        }
        BinaryOp::Pow => {
            let out = c.out(0)?;
            // y * x^(y-1) is 0 * inf at x == 0, y == 0; PyTorch defines it as 0 there.
            let gx = g.mul(y)?.mul(&x.pow(&y.sub_scalar(1.0)?)?)?;
            let gx = y.eq_scalar(0.0)?.where_cond(&scalar(0.0, x)?, &gx)?;
            // out * ln(x) is 0 * -inf at x == 0; PyTorch defines it as 0 there.
            let gy = g.mul(out)?.mul(&x.log()?)?;
            let gy = x.eq_scalar(0.0)?.where_cond(&scalar(0.0, x)?, &gy)?;
            (gx, gy)
        }
        BinaryOp::Maximum | BinaryOp::Minimum => {
            // Ties split the gradient in half, as PyTorch.
            let x_wins = if op == BinaryOp::Maximum { x.gt(y)? } else { x.lt(y)? };
            let tie = as_float(&x.eq(y)?, x)?.mul_scalar(0.5)?;
            let wx = as_float(&x_wins, x)?.add(&tie)?;
            let wy = wx.neg()?.add_scalar(1.0)?;
            (g.mul(&wx)?, g.mul(&wy)?)
        }
    };
    Ok(vec![Some(sum_to(&gx, x.shape())?), Some(sum_to(&gy, y.shape())?)])
}

pub(super) fn binary_scalar(op: BinaryOp, s: f64, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    let gx = match op {
        BinaryOp::Add | BinaryOp::Sub => g.clone(),
        BinaryOp::Mul => g.mul_scalar(s)?,
        BinaryOp::Div => g.div_scalar(s)?,
        BinaryOp::Pow if s == 0.0 => g.zeros_like()?,
        BinaryOp::Pow => g.mul(&x.pow_scalar(s - 1.0)?.mul_scalar(s)?)?,
        BinaryOp::Maximum | BinaryOp::Minimum => {
            let wins = if op == BinaryOp::Maximum { x.gt_scalar(s)? } else { x.lt_scalar(s)? };
            let w = as_float(&wins, x)?.add(&as_float(&x.eq_scalar(s)?, x)?.mul_scalar(0.5)?)?;
            g.mul(&w)?
        }
    };
    Ok(vec![Some(gx)])
}

/// `where(cond, a, b)`: the gradient goes to `a` where cond is set, else to `b`.
pub(super) fn where_cond(c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let (cond, a, b) = (c.x(0), c.x(1), c.x(2));
    let zero = scalar(0.0, g)?;
    let ga = cond.where_cond(g, &zero)?;
    let gb = cond.where_cond(&zero, g)?;
    Ok(vec![None, Some(sum_to(&ga, a.shape())?), Some(sum_to(&gb, b.shape())?)])
}
