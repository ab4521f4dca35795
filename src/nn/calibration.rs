//! nn/calibration.rs — calibration runs: static activation quantization for a whole model. A
//! [`CalibrationRun`] keeps one [`TensorObserver`] per named tensor (usually the input of a
//! [`QuantLinear`], named after the layer); the user's own forward code feeds representative
//! batches through [`CalibrationRun::forward`] (or [`CalibrationRun::observe`] for any tensor);
//! then [`CalibrationRun::freeze`] turns a chosen [`Method`] (one for all layers, or one per
//! layer) into each layer's static activation scale and zero point through
//! [`QuantLinear::set_activation_quant`], which requantizes the bias and re-checks the i32 bound.
//!
//! ```
//! use int8rt::calib::{AmaxMethod, Method, ObserverConfig};
//! use int8rt::gemm::Context;
//! use int8rt::nn::{CalibrationRun, LinearConfig, QuantLinear};
//!
//! let w: Vec<f32> = (0..12).map(|i| (i as f32 - 6.0) * 0.1).collect();
//! let mut fc = QuantLinear::from_f32("fc", &w, 3, 4, None, LinearConfig::default())?;
//! let ctx = Context::new();
//! let mut run = CalibrationRun::new(ObserverConfig::default());
//! run.attach_layer(&fc)?;
//! for b in 0..4 {
//!     let x: Vec<f32> = (0..8).map(|i| ((i + b) as f32 * 0.37).sin()).collect();
//!     let _y = run.forward(&fc, &ctx, &x, 2)?; // observes fc's input, runs fc as it is
//! }
//! let frozen = run.freeze(&mut [&mut fc], Method::Symmetric(AmaxMethod::Percentile(99.99)))?;
//! println!("fc: scale {}", frozen[0].params.scale());
//! # Ok::<(), int8rt::Error>(())
//! ```

use std::collections::BTreeMap;

use crate::calib::{Method, ObserverConfig, TensorObserver};
use crate::error::{Error, Result};
use crate::gemm::Context;
use crate::nn::{ActivationQuant, QuantLinear};
use crate::quant::QuantParams;

/// What [`CalibrationRun::freeze`] set on one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Frozen {
    /// The layer's name.
    pub layer: String,
    /// The method used.
    pub method: Method,
    /// The static activation parameters now in the layer.
    pub params: QuantParams,
}

/// Observers for named tensors, fed batch by batch, frozen into layers at the end.
#[derive(Clone, Debug)]
pub struct CalibrationRun {
    cfg: ObserverConfig,
    observers: BTreeMap<String, TensorObserver>,
}

impl CalibrationRun {
    /// An empty run whose observers collect what `cfg` asks for.
    pub fn new(cfg: ObserverConfig) -> Self {
        CalibrationRun {
            cfg,
            observers: BTreeMap::new(),
        }
    }

    /// Start observing the tensor `name` (attaching twice is a no-op).
    pub fn attach(&mut self, name: &str) -> Result<()> {
        if !self.observers.contains_key(name) {
            self.observers
                .insert(name.to_string(), TensorObserver::new(name, self.cfg)?);
        }
        Ok(())
    }

    /// Start observing the input of `layer` (under the layer's name).
    pub fn attach_layer(&mut self, layer: &QuantLinear) -> Result<()> {
        self.attach(layer.name())
    }

    /// Feed one batch of the tensor `name`, shape `shape` (C order; the last axis is the softmax
    /// axis for the cross-entropy statistic).
    pub fn observe(&mut self, name: &str, x: &[f32], shape: &[usize]) -> Result<()> {
        self.observer_mut(name)?.observe(x, shape)
    }

    /// [`CalibrationRun::observe`] of a batch that lives elsewhere (GPU memory; the public door
    /// is `observe_cuda`, feature `cuda`).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the device path (`observe_cuda`)
    pub(crate) fn observe_source<S: crate::calib::source::BatchSource>(
        &mut self,
        name: &str,
        src: &mut S,
    ) -> Result<()> {
        self.observer_mut(name)?.observe_source(src)
    }

    fn observer_mut(&mut self, name: &str) -> Result<&mut TensorObserver> {
        self.observers
            .get_mut(name)
            .ok_or_else(|| Error::Calibration {
                tensor: name.to_string(),
                detail: "no observer is attached to this tensor (call attach first)".into(),
            })
    }

    /// Observe `layer`'s input `x: [m, in_features]`, then run the layer as it is configured now
    /// (dynamic quantization for a freshly built layer) and return its f32 output, so that the
    /// caller's forward code can continue with it.
    pub fn forward(
        &mut self,
        layer: &QuantLinear,
        ctx: &Context,
        x: &[f32],
        m: usize,
    ) -> Result<Vec<f32>> {
        let k = layer.in_features();
        let len = crate::error::checked_len("input [m, in_features]", m, k)?;
        if x.len() != len {
            return Err(Error::shape("input [m, in_features]", len, x.len()));
        }
        self.observe(layer.name(), x, &[m, k])?;
        layer.forward_f32(ctx, x, m)
    }

    /// The observer of `name`.
    pub fn observer(&self, name: &str) -> Option<&TensorObserver> {
        self.observers.get(name)
    }

    /// The observed tensors' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.observers.keys().map(String::as_str)
    }

    /// The parameters `method` gives for the tensor `name`.
    pub fn params(&self, name: &str, method: Method) -> Result<QuantParams> {
        self.observers
            .get(name)
            .ok_or_else(|| Error::Calibration {
                tensor: name.to_string(),
                detail: "no observer is attached to this tensor".into(),
            })?
            .params(method)
    }

    /// Merge a run that saw other batches (another thread, shard or machine): observers of the
    /// same tensor merge (see [`TensorObserver::merge`]), others are added.
    pub fn merge(&mut self, other: &CalibrationRun) -> Result<()> {
        for (name, obs) in &other.observers {
            match self.observers.get_mut(name) {
                Some(mine) => mine.merge(obs)?,
                None => {
                    self.observers.insert(name.clone(), obs.clone());
                }
            }
        }
        Ok(())
    }

    /// Freeze one method into every layer's static activation quantization.
    pub fn freeze(&self, layers: &mut [&mut QuantLinear], method: Method) -> Result<Vec<Frozen>> {
        self.freeze_with(layers, |_| method)
    }

    /// Freeze a method chosen per layer (by name). All parameters are computed before any layer
    /// changes; if a layer refuses its parameters, the layers already changed are restored, so
    /// on error every layer is as it was.
    pub fn freeze_with(
        &self,
        layers: &mut [&mut QuantLinear],
        choose: impl Fn(&str) -> Method,
    ) -> Result<Vec<Frozen>> {
        let mut plan = Vec::with_capacity(layers.len());
        for layer in layers.iter() {
            let method = choose(layer.name());
            let params = self.params(layer.name(), method)?;
            plan.push(Frozen {
                layer: layer.name().to_string(),
                method,
                params,
            });
        }
        let previous: Vec<ActivationQuant> = layers.iter().map(|l| l.activation_quant()).collect();
        for i in 0..layers.len() {
            if let Err(e) = layers[i].set_activation_quant(ActivationQuant::Static(plan[i].params))
            {
                for j in 0..i {
                    // Restoring a configuration the layer held before cannot fail.
                    let _ = layers[j].set_activation_quant(previous[j]);
                }
                return Err(e);
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::{AmaxMethod, NonFinite, RangeMethod};
    use crate::nn::LinearConfig;

    fn layer(name: &str, n: usize, k: usize) -> QuantLinear {
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.05)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 0.2).collect();
        QuantLinear::from_f32(name, &w, n, k, Some(&b), LinearConfig::default()).unwrap()
    }

    #[test]
    fn freeze_sets_static_params_and_forward_uses_them() {
        let ctx = Context::new();
        let mut fc = layer("fc", 3, 5);
        let mut run = CalibrationRun::new(ObserverConfig::default());
        run.attach_layer(&fc).unwrap();
        let x: Vec<f32> = (0..20).map(|i| (i as f32 * 0.7).sin() * 2.0).collect();
        run.forward(&fc, &ctx, &x, 4).unwrap();
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let frozen = run
            .freeze(&mut [&mut fc], Method::Symmetric(AmaxMethod::Max))
            .unwrap();
        assert_eq!(frozen[0].params, QuantParams::symmetric(amax).unwrap());
        assert_eq!(
            fc.activation_quant(),
            ActivationQuant::Static(frozen[0].params)
        );
        assert!(fc.bias_i32().is_some());
        let y = fc.forward_f32(&ctx, &x, 4).unwrap();
        assert_eq!(y.len(), 12);
    }

    #[test]
    fn errors_name_the_tensor_and_leave_layers_unchanged() {
        let ctx = Context::new();
        let mut a = layer("a", 2, 3);
        let mut b = layer("b", 2, 3);
        let mut run = CalibrationRun::new(ObserverConfig::default());
        run.attach_layer(&a).unwrap();
        run.attach_layer(&b).unwrap();
        run.forward(&a, &ctx, &[1.0, -2.0, 0.5], 1).unwrap();
        run.forward(&b, &ctx, &[1.0, 2.0, 0.5], 1).unwrap();
        // NaN: an error naming the tensor, nothing recorded.
        let e = run.forward(&a, &ctx, &[1.0, f32::NAN, 0.5], 1).unwrap_err();
        assert!(e.to_string().contains("`a`"), "{e}");
        // Unsigned needs data ≥ 0: layer a saw -2, so freezing fails and b stays dynamic.
        let before = b.activation_quant();
        let e = run
            .freeze(&mut [&mut b, &mut a], Method::Unsigned(AmaxMethod::Max))
            .unwrap_err();
        assert!(e.to_string().contains("`a`"), "{e}");
        assert_eq!(b.activation_quant(), before);
        // Not attached.
        assert!(run.observe("c", &[1.0], &[1]).is_err());
        // Skip policy counts instead.
        let cfg = ObserverConfig {
            nonfinite: NonFinite::Skip,
            ..ObserverConfig::default()
        };
        let mut skip = CalibrationRun::new(cfg);
        skip.attach("t").unwrap();
        skip.observe("t", &[1.0, f32::INFINITY, f32::NAN], &[3])
            .unwrap();
        assert_eq!(skip.observer("t").unwrap().nonfinite_skipped(), 2);
        assert!(skip
            .params("t", Method::Asymmetric(RangeMethod::MinMax))
            .is_ok());
    }

    #[test]
    fn runs_merge() {
        let mut a = CalibrationRun::new(ObserverConfig::default());
        let mut b = a.clone();
        a.attach("t").unwrap();
        b.attach("t").unwrap();
        b.attach("u").unwrap();
        a.observe("t", &[1.0, -3.0], &[2]).unwrap();
        b.observe("t", &[5.0], &[1]).unwrap();
        b.observe("u", &[2.0], &[1]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.names().collect::<Vec<_>>(), vec!["t", "u"]);
        assert_eq!(a.observer("t").unwrap().range().unwrap(), (-3.0, 5.0));
    }
}
