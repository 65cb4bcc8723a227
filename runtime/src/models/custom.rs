//! Models written in Rust: a struct of candle tensors marked `#[kiln::model]`.
//!
//! ```ignore
//! use kiln::candle::{Result, Tensor};
//!
//! #[kiln::model(inputs = 4, outputs = 1)]
//! pub struct Scorer {
//!     weight: Tensor, // read from the safetensors tensor named `weight`
//!     bias: Tensor,
//! }
//!
//! impl kiln::models::Forward for Scorer {
//!     // rows × inputs → rows (or rows × outputs)
//!     fn forward(&self, x: &Tensor) -> Result<Tensor> {
//!         x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?.tanh()
//!     }
//! }
//! ```
//!
//! The macro implements [`FromTensors`] (each field is taken from the file by
//! its name); the generated binary registers the type under its name, and
//! `[models.NAME] architecture = "Scorer"` uses it. `kiln check` reads the
//! struct with syn: the file must hold every field's tensor, and `inputs` is
//! checked against the `predict` node's features.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use candle_core::{DType, Tensor};

/// Building a model from a file's tensors: what `#[kiln::model]` implements.
pub trait FromTensors: Sized {
    /// Builds the model from the file's tensors (all converted to f32).
    fn from_tensors(tensors: &mut HashMap<String, Tensor>) -> candle_core::Result<Self>;
}

/// Running a model: what the author of a `#[kiln::model]` type implements.
pub trait Forward {
    /// rows × inputs → rows, or rows × outputs.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}

/// A model type a spec can name as its `architecture`.
pub trait CustomModel: FromTensors + Forward + Send + Sync + 'static {}
impl<M: FromTensors + Forward + Send + Sync + 'static> CustomModel for M {}

/// Takes tensor `name` out of a file's tensors as f32 (for `#[kiln::model]`).
pub fn take(tensors: &mut HashMap<String, Tensor>, name: &str) -> candle_core::Result<Tensor> {
    tensors
        .remove(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("tensor `{name}` is missing")))?
        .to_dtype(DType::F32)
}

/// A loaded custom model, behind a trait object.
pub trait DynModel: Send + Sync {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}

impl<M: CustomModel> DynModel for M {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Forward::forward(self, x)
    }
}

type Builder = fn(&mut HashMap<String, Tensor>) -> candle_core::Result<Box<dyn DynModel>>;

static MODELS: LazyLock<RwLock<HashMap<String, Builder>>> = LazyLock::new(Default::default);

/// Makes `M` available as `architecture = "NAME"` in this process.
pub fn register<M: CustomModel>(name: &str) {
    fn build<M: CustomModel>(t: &mut HashMap<String, Tensor>) -> candle_core::Result<Box<dyn DynModel>> {
        Ok(Box::new(M::from_tensors(t)?))
    }
    MODELS.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), build::<M>);
}

pub(super) fn build(name: &str, tensors: &mut HashMap<String, Tensor>) -> candle_core::Result<Box<dyn DynModel>> {
    let builder = MODELS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .copied()
        .ok_or_else(|| candle_core::Error::Msg(format!("no #[kiln::model] type `{name}` is registered in this binary")))?;
    builder(tensors)
}
