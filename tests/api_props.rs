//! tests/api_props.rs — property tests (proptest) of the safe GEMM and layer API on arbitrary,
//! often wrong, arguments: lengths off by one, zero dimensions, scales that are zero, negative,
//! NaN or infinite, zero points and output ranges outside their types, biases of the wrong kind.
//! Whatever the arguments, no call panics, and every CPU path answers as the reference path
//! does: the same bits when it accepts the call, an error of the same kind when it refuses.

mod common;
#[path = "common/layer_cases.rs"]
mod layer_cases;
#[allow(dead_code)] // (its list of output kinds: the faults here choose their own)
#[path = "common/outputs.rs"]
mod outputs;

use std::panic::{catch_unwind, AssertUnwindSafe};

use half::{bf16, f16};
use int8rt::gemm::{gemm, ActScales, Activations, Bias, GemmArgs, OutBuf, OutKind, OutQuant, Path};
use int8rt::Context;
use layer_cases::{layer_answer, layer_case, Answer};
use outputs::HostOut;
use proptest::prelude::*;

/// A bad scale: zero, negative, NaN, infinite or subnormal.
fn bad_scale() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        Just(-0.5f32),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::MIN_POSITIVE / 4.0),
    ]
}

/// What one call gets wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// The length of x, w, the weight scales, the per-row scales, the per-row zero points, the
    /// bias or the output (0 … 6): one more, one less, or zero.
    Len(usize, u8),
    ActScale(f32),
    WeightScale(f32),
    ZeroPoint(i32),
    OutQuant(f32, i32, i32, i32),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        8 => Just(Fault::None),
        7 => (0usize..7, 0u8..3).prop_map(|(i, how)| Fault::Len(i, how)),
        1 => bad_scale().prop_map(Fault::ActScale),
        1 => bad_scale().prop_map(Fault::WeightScale),
        1 => prop_oneof![-300i32..0, 1i32..300].prop_map(Fault::ZeroPoint),
        1 => (prop_oneof![bad_scale(), 0.01f32..2.0], -300i32..300, -300i32..300, -300i32..300)
            .prop_map(|(s, z, lo, hi)| Fault::OutQuant(s, z, lo, hi)),
    ]
}

/// Everything one raw `gemm` call takes; `faults` (usually none, sometimes two) say what is
/// wrong with it. A float bias with i32 output, a zero point on signed activations, and an
/// accumulator bound past i32 are wrong without a fault.
#[derive(Debug, Clone)]
struct Call {
    m: usize,
    n: usize,
    k: usize,
    faults: [Fault; 2],
    unsigned: bool,
    per_row: bool,
    zp: i32,
    act_scale: f32,
    w_scale: f32,
    bias_kind: u8,
    out_kind: u8,
    out_scale: f32,
    wmax: i8,
    seed: u64,
}

impl Call {
    /// The length of item `i` (see [`Fault::Len`]) where it should be `want`.
    fn len(&self, i: usize, want: usize) -> usize {
        self.faults.iter().fold(want, |l, f| match *f {
            Fault::Len(j, how) if j == i => match how {
                0 => l + 1,
                1 => l.saturating_sub(1),
                _ => 0,
            },
            _ => l,
        })
    }

    /// The first fault `pick` recognizes.
    fn fault<T>(&self, pick: impl Fn(&Fault) -> Option<T>) -> Option<T> {
        self.faults.iter().find_map(pick)
    }
}

fn call() -> impl Strategy<Value = Call> {
    (
        (0usize..6, 0usize..40, 0usize..70),
        (fault(), prop_oneof![4 => Just(Fault::None), 1 => fault()]),
        (any::<bool>(), any::<bool>(), 0i32..=255),
        (1e-3f32..4.0, 1e-3f32..4.0, 1e-3f32..4.0),
        (0u8..3, 0u8..5),
        (1i8..=127, any::<u64>()),
    )
        .prop_map(
            |((m, n, k), (f0, f1), (unsigned, per_row, zp), (a, w, o), (b, out), (wmax, seed))| {
                Call {
                    m,
                    n,
                    k,
                    faults: [f0, f1],
                    unsigned,
                    per_row,
                    zp: if unsigned { zp } else { 0 },
                    act_scale: a,
                    w_scale: w,
                    bias_kind: b,
                    out_kind: out,
                    out_scale: o,
                    wmax,
                    seed,
                }
            },
        )
}

fn run(c: &Call, path: Path) -> Answer {
    let mut rng = common::Rng::new(c.seed);
    let (m, n, k) = (c.m, c.n, c.k);
    let xs8 = rng.i8s(c.len(0, m * k), -128, 127);
    let xu8 = rng.u8s(c.len(0, m * k), 0, 255);
    let x = if c.unsigned {
        Activations::U8(&xu8)
    } else {
        Activations::S8(&xs8)
    };
    let w = rng.i8s(c.len(1, n * k), -(c.wmax as i32), c.wmax as i32);
    let bad_w_scale = c.fault(|f| match *f {
        Fault::WeightScale(s) => Some(s),
        _ => None,
    });
    let w_scales: Vec<f32> = (0..c.len(2, n))
        .map(|i| match (i, bad_w_scale) {
            (0, Some(s)) => s,
            _ => c.w_scale + i as f32 * 1e-3,
        })
        .collect();
    let act_scale = c
        .fault(|f| match *f {
            Fault::ActScale(s) => Some(s),
            _ => None,
        })
        .unwrap_or(c.act_scale);
    let zp = c
        .fault(|f| match *f {
            Fault::ZeroPoint(z) => Some(z),
            _ => None,
        })
        .unwrap_or(c.zp);
    let row_scales: Vec<f32> = (0..c.len(3, m))
        .map(|i| if i == 0 { act_scale } else { 0.02 })
        .collect();
    let row_zps: Vec<i32> = vec![zp; c.len(4, m)];
    let act = if c.per_row {
        ActScales::PerRow {
            scales: &row_scales,
            zero_points: c.unsigned.then_some(&row_zps[..]),
        }
    } else {
        ActScales::PerTensor {
            scale: act_scale,
            zero_point: zp,
        }
    };
    let bl = c.len(5, n);
    let bi: Vec<i32> = (0..bl).map(|_| rng.int(-5000, 5000)).collect();
    let bf = rng.f32s(bl, 2.0);
    let bias = match c.bias_kind {
        0 => Bias::None,
        1 => Bias::I32(&bi),
        _ => Bias::F32(&bf),
    };
    let args = GemmArgs {
        m,
        n,
        k,
        x,
        act,
        w: &w,
        w_scales: &w_scales,
        bias,
    };
    let yl = c.len(6, m * n);
    let oq = c
        .fault(|f| match *f {
            Fault::OutQuant(s, z, lo, hi) => Some(OutQuant {
                scale: s,
                zero_point: z,
                qmin: lo,
                qmax: hi,
            }),
            _ => None,
        })
        .unwrap_or(OutQuant {
            scale: c.out_scale,
            zero_point: (c.seed % 21) as i32 - 10,
            qmin: -128,
            qmax: 127,
        });
    let kind = [
        OutKind::I32,
        OutKind::F32,
        OutKind::F16,
        OutKind::Bf16,
        OutKind::I8(oq),
    ][c.out_kind as usize];
    let mut y = HostOut::new(kind, yl);
    let ctx = Context::new().with_path(path);
    let r = catch_unwind(AssertUnwindSafe(|| gemm(&ctx, &args, &mut y.as_buf())));
    match r {
        Err(_) => Answer::Panicked,
        Ok(Err(e)) => Answer::Refused(std::mem::discriminant(&e)),
        Ok(Ok(_)) => Answer::Bits(y.bits()),
    }
}

/// No panic on the reference path, and every CPU path answers as it does.
fn every_path_answers_as_the_reference(
    answer: impl Fn(Path) -> Answer,
) -> Result<(), TestCaseError> {
    let want = answer(Path::Reference);
    prop_assert_ne!(&want, &Answer::Panicked, "the reference path panicked");
    for path in common::cpu_paths() {
        prop_assert_eq!(&answer(path), &want, "{:?}", path);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn raw_gemm_never_panics_and_every_path_answers_as_the_reference(c in call()) {
        every_path_answers_as_the_reference(|p| run(&c, p))?;
    }

    #[test]
    fn layers_never_panic_and_every_path_answers_as_the_reference(c in layer_case()) {
        every_path_answers_as_the_reference(|p| {
            layer_answer(&c, &|l, x, m, y| l.forward(&Context::new().with_path(p), x, m, y).map(|_| ()))
        })?;
    }
}

#[test]
fn the_draws_reach_both_answers() {
    // The properties above are only worth their cases if the draws both succeed and fail often:
    // count the reference path's answers over a fixed sample of the same strategies.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let tally = |answer: Answer, counts: &mut (u32, u32)| match answer {
        Answer::Bits(_) => counts.0 += 1,
        Answer::Refused(_) => counts.1 += 1,
        Answer::Panicked => panic!("the reference path panicked"),
    };
    let (mut raw, mut layer) = ((0, 0), (0, 0));
    for _ in 0..400 {
        let c = call().new_tree(&mut runner).unwrap().current();
        tally(run(&c, Path::Reference), &mut raw);
        let c = layer_case().new_tree(&mut runner).unwrap().current();
        let reference = Context::new().with_path(Path::Reference);
        tally(
            layer_answer(&c, &|l, x, m, y| l.forward(&reference, x, m, y).map(|_| ())),
            &mut layer,
        );
    }
    eprintln!("(accepted, refused): raw {raw:?}, layer {layer:?}");
    for (ok, refused) in [raw, layer] {
        assert!(
            ok >= 40 && refused >= 40,
            "{ok} accepted, {refused} refused"
        );
    }
}
