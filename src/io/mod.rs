//! io — checkpoints: the safetensors container ([`safetensors`]: memory-mapped reads of
//! f32/f16/bf16 weights, a streaming writer) and int8 layers in the compressed-tensors layout
//! that vLLM and llm-compressor use ([`compressed`]). Reading a checkpoint is the first step of
//! serving a quantized model; writing one is the last step of `int8rt quantize`.

pub mod compressed;
pub mod safetensors;

pub use compressed::{
    save_quant_linears, CheckpointScheme, CompressedCheckpoint, InputQuant, LoadedLinear,
    QuantizationConfig,
};
pub use safetensors::{Dtype, SafeTensors, TensorBuf, TensorSpec, TensorView};
