//! qat — quantization-aware training: the last stage of the workflow, where a model is trained
//! while it sees the quantization noise it will meet in deployment, and then handed to the int8
//! engine with exactly the numbers training used.
//!
//! - [`FakeQuantizer`] (`fake_quant.rs`): `y = dequant(quant(x))` for 2..=8-bit codes, symmetric
//!   or asymmetric, per tensor or per channel, bit for bit [`crate::reference::fake_quantize`];
//!   backward by the clipped straight-through estimator, with learnable ranges (LSQ for the
//!   scale, LSQ+ for the zero point).
//! - [`train`]: the small f32 toolkit training needs (Linear products, ReLU, softmax
//!   cross-entropy, SGD and Adam, a seeded generator).
//! - [`QatLinear`] (`linear.rs`): a Linear layer with fake-quantized weights and input; its
//!   deployable forward is the exact integer product plus the crate's epilogue, and
//!   [`QatLinear::to_quant_linear`] gives the `nn::QuantLinear` that reproduces it bit for bit.
//! - [`Mlp`] / [`QuantMlp`] (`mlp.rs`): the model of the end-to-end example.
//!
//! ```
//! use int8rt::qat::{FakeQuantConfig, Mlp, train::Adam};
//! use int8rt::gemm::Context;
//!
//! // Four points, two classes, a 2-8-2 network.
//! let x = [0.0f32, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0];
//! let labels = [0u8, 0, 1, 1];
//! let mut mlp = Mlp::new(&[2, 8, 2], 7)?;
//! let mut opt = Adam::new(0.05);
//! for _ in 0..50 {
//!     mlp.train_step(&x, &labels, &mut opt)?;
//! }
//! // 4-bit weights and inputs, ranges from the f32 model, then QAT.
//! let ranges = mlp.input_ranges(&x, 4)?;
//! mlp.enable_fake_quant(FakeQuantConfig::weights(4), FakeQuantConfig::activations(4, false), &ranges)?;
//! for _ in 0..20 {
//!     mlp.train_step(&x, &labels, &mut opt)?;
//! }
//! // The int8 engine gives the deployable forward's bits.
//! let engine = mlp.to_quant_mlp()?;
//! let (logits, _path) = engine.forward(&Context::new(), &x, 4)?;
//! assert_eq!(logits, mlp.forward_deploy(&x, 4)?);
//! # Ok::<(), int8rt::Error>(())
//! ```

mod fake_quant;
mod linear;
mod mlp;
pub mod train;

pub use fake_quant::{FakeQuantConfig, FakeQuantizer, MIN_LEARNED_SCALE};
pub use linear::QatLinear;
pub use mlp::{Mlp, QuantMlp};
