//! tests/common/layer_cases.rs — arbitrary, often wrong, `QuantLinear` calls (shapes, lengths off
//! by one, activation modes, bias, output kinds, NaN / ±inf inputs) and what one way of running
//! them answered. Shared by the CPU paths' property test (tests/api_props.rs) and the device
//! layer's (tests/gpu.rs), each of which also includes `common/outputs.rs` as `outputs`: every
//! way must answer as the reference path does.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::outputs::HostOut;
use int8rt::gemm::{OutBuf, OutKind, OutQuant};
use int8rt::nn::{ActivationQuant, LinearConfig, QuantLinear};
use int8rt::quant::{Granularity, QuantParams, Scheme};
use int8rt::Error;
use proptest::prelude::*;

/// One layer call: `(n, k, m)`; which of the weights, bias, input and output lengths are off;
/// the activation mode (and whether there is a bias); the output kind (f32, f16, bf16, i8, i32:
/// refused with a float bias); a value written into x
/// at an index (ordinary, NaN or −inf); the seed.
pub type LayerCase = ((usize, usize, usize), [u8; 4], u8, u8, (usize, f32), u64);

pub fn layer_case() -> impl Strategy<Value = LayerCase> {
    (
        (0usize..12, 0usize..40, 0usize..5),
        any::<[u8; 4]>(),
        0u8..12,
        0u8..5,
        (
            0usize..200,
            prop_oneof![Just(0.5f32), Just(f32::NAN), Just(f32::NEG_INFINITY)],
        ),
        any::<u64>(),
    )
}

/// What a call answered: its output's bits, or the kind of its error, or that it panicked.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Bits(Vec<u32>),
    Refused(std::mem::Discriminant<Error>),
    Panicked,
}

/// A run of a layer: `forward(layer, x, m, out)`.
pub type Forward<'a> =
    dyn Fn(&QuantLinear, &[f32], usize, &mut OutBuf<'_>) -> int8rt::Result<()> + 'a;

/// Build the case's layer and input and run `forward` on them.
pub fn layer_answer(c: &LayerCase, forward: &Forward<'_>) -> Answer {
    let &((n, k, m), picks, mode, out_kind, poison, seed) = c;
    let mut rng = crate::common::Rng::new(seed);
    // One length in 16 is off: one more, one less, or zero.
    let near = |want: usize, pick: u8| match pick % 16 {
        0 => want + 1,
        1 => want.saturating_sub(1),
        2 => 0,
        _ => want,
    };
    let w = rng.f32s(near(n * k, picks[0]), 0.3);
    let b = rng.f32s(near(n, picks[1]), 0.5);
    let mut x = rng.f32s(near(m * k, picks[2]), 1.0);
    if let Some(v) = x.get_mut(poison.0) {
        *v = poison.1;
    }
    let dynamic = |scheme, granularity| ActivationQuant::Dynamic {
        scheme,
        granularity,
    };
    let activations = match mode % 6 {
        0 => dynamic(Scheme::Asymmetric, Granularity::PerRow),
        1 => dynamic(Scheme::Symmetric, Granularity::PerTensor),
        2 => dynamic(Scheme::Asymmetric, Granularity::PerTensor),
        3 => dynamic(Scheme::Symmetric, Granularity::PerRow),
        4 => ActivationQuant::Static(QuantParams::asymmetric(-1.5, 2.0).unwrap()),
        _ => ActivationQuant::Static(QuantParams::symmetric(2.5).unwrap()),
    };
    let cfg = LinearConfig {
        activations,
        ..Default::default()
    };
    let yl = near(m * n, picks[3]);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let l = QuantLinear::from_f32("fc", &w, n, k, (mode >= 6).then_some(&b[..]), cfg)?;
        let kind = [
            OutKind::F32,
            OutKind::F16,
            OutKind::Bf16,
            OutKind::I8(OutQuant {
                scale: 0.05,
                zero_point: 3,
                qmin: -128,
                qmax: 127,
            }),
            OutKind::I32,
        ][out_kind as usize % 5];
        let mut y = HostOut::new(kind, yl);
        forward(&l, &x, m, &mut y.as_buf())?;
        let bits = y.bits();
        Ok::<_, Error>(bits)
    }));
    match r {
        Err(_) => Answer::Panicked,
        Ok(Err(e)) => Answer::Refused(std::mem::discriminant(&e)),
        Ok(Ok(bits)) => Answer::Bits(bits),
    }
}
