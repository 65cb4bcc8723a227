//! Model inference with candle: `[models.NAME]` and the `predict` transform.
//!
//! - [`tensors`] reads a safetensors header (names, dtypes, shapes) without the
//!   data: the compiler checks a spec's models with it ([`tensors_at`]: with
//!   range requests, from an object store, SPEC §6a).
//! - [`shape_of`] says which tensors an architecture needs and what their shapes
//!   imply (features in, values out), or why the file does not fit.
//! - [`load`] loads a model once per process (every partition and thread shares
//!   it); [`Loaded::forward_t`] runs it on a batch.
//! - [`predict::Predict`] is the vectorized scalar function a `predict` node calls.
//! - [`custom`] holds the Rust models marked `#[kiln::model]`.

pub mod custom;
pub mod predict;

pub use custom::{CustomModel, Forward, FromTensors, register};

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use candle_core::{DType, Device, Tensor};

use crate::plan::{Activation, Architecture, Model, ModelDevice};

/// One tensor of a safetensors file, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// The tensors of a safetensors file, read from its header only.
pub fn tensors(path: &Path) -> Result<BTreeMap<String, TensorInfo>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let name = path.display().to_string();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| not_safetensors(&name, e.to_string()))?;
    let mut header = vec![0u8; header_len(&name, len)?];
    file.read_exact(&mut header).map_err(|e| not_safetensors(&name, e.to_string()))?;
    parse_header(&name, &header)
}

/// The same for a model at an object-store URL (SPEC §6a): two range requests.
pub fn tensors_at(url: &str) -> Result<BTreeMap<String, TensorInfo>, String> {
    let loc = crate::storage::locate(url).map_err(|e| e.to_string())?;
    crate::storage::block_on(async move {
        use object_store::ObjectStoreExt;
        let failed = |e: object_store::Error| crate::storage::read_error(&loc.url, e).to_string();
        let len = loc.raw.get_range(&loc.path, 0..8).await.map_err(failed)?;
        let len: [u8; 8] = len.as_ref().try_into().map_err(|_| not_safetensors(url, "shorter than 8 bytes".into()))?;
        let n = header_len(url, len)? as u64;
        let header = loc.raw.get_range(&loc.path, 8..8 + n).await.map_err(failed)?;
        parse_header(url, &header)
    })
}

fn not_safetensors(name: &str, why: String) -> String {
    format!("{name} is not a safetensors file: {why}")
}

/// The header's length, from the file's first 8 bytes.
fn header_len(name: &str, bytes: [u8; 8]) -> Result<usize, String> {
    let len = u64::from_le_bytes(bytes);
    if len > 100 << 20 {
        return Err(not_safetensors(name, format!("header of {len} bytes")));
    }
    Ok(len as usize)
}

fn parse_header(name: &str, header: &[u8]) -> Result<BTreeMap<String, TensorInfo>, String> {
    let not_st = |why: String| not_safetensors(name, why);
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| not_st(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| not_st(format!("tensor `{name}` has no dtype")))?;
        let shape = v
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| not_st(format!("tensor `{name}` has no shape")))?;
        out.insert(name, TensorInfo { dtype: dtype.to_string(), shape });
    }
    Ok(out)
}

/// A model file on an object store: its size and modification time (the cache's key).
fn remote_identity(url: &str) -> Result<(u64, Option<std::time::SystemTime>), String> {
    let loc = crate::storage::locate(url).map_err(|e| e.to_string())?;
    crate::storage::block_on(async move {
        use object_store::ObjectStoreExt;
        let meta = loc.raw.head(&loc.path).await.map_err(|e| crate::storage::read_error(&loc.url, e).to_string())?;
        Ok((meta.size, Some(std::time::SystemTime::from(meta.last_modified))))
    })
}

/// The whole file at an object-store URL.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let loc = crate::storage::locate(url).map_err(|e| e.to_string())?;
    crate::storage::block_on(async move {
        use object_store::ObjectStoreExt;
        let failed = |e: object_store::Error| crate::storage::read_error(&loc.url, e).to_string();
        let got = loc.raw.get(&loc.path).await.map_err(failed)?;
        Ok(got.bytes().await.map_err(failed)?.to_vec())
    })
}

/// The tensors an architecture reads: (name, expected shape), where a `None`
/// dimension is read from the file.
fn expected(arch: &Architecture) -> Vec<(String, Vec<Option<usize>>)> {
    match arch {
        Architecture::Linear | Architecture::Logistic => {
            vec![("weight".into(), vec![None, None]), ("bias".into(), vec![None])]
        }
        Architecture::Mlp { layers, .. } => layers
            .windows(2)
            .enumerate()
            .flat_map(|(i, w)| {
                [
                    (format!("layers.{i}.weight"), vec![Some(w[1]), Some(w[0])]),
                    (format!("layers.{i}.bias"), vec![Some(w[1])]),
                ]
            })
            .collect(),
        Architecture::Custom(_) => Vec::new(),
    }
}

fn show(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.map_or("_".to_string(), |d| d.to_string())).collect();
    format!("[{}]", dims.join(", "))
}

/// Features in and values out of a built-in architecture whose weights are
/// `found`, or every reason they do not fit it.
pub fn shape_of(arch: &Architecture, found: &BTreeMap<String, TensorInfo>) -> Result<(usize, usize), Vec<String>> {
    let mut problems = Vec::new();
    for (name, shape) in expected(arch) {
        match found.get(&name) {
            None => problems.push(format!("tensor `{name}` {} is missing", show(&shape))),
            Some(t) if !matches!(t.dtype.as_str(), "F32" | "F64" | "F16" | "BF16") => {
                problems.push(format!("tensor `{name}` is {}, not a float type", t.dtype))
            }
            Some(t) => {
                let fits = t.shape.len() == shape.len() && shape.iter().zip(&t.shape).all(|(e, f)| e.is_none_or(|e| e == *f));
                if !fits {
                    problems.push(format!("tensor `{name}` has shape {:?}; the architecture needs {}", t.shape, show(&shape)));
                }
            }
        }
    }
    for (name, t) in found {
        if t.shape.contains(&0) && expected(arch).iter().any(|(n, _)| n == name) {
            problems.push(format!("tensor `{name}` has an empty dimension {:?}", t.shape));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    match arch {
        Architecture::Linear | Architecture::Logistic => {
            let (w, b) = (&found["weight"].shape, &found["bias"].shape);
            if w[0] != b[0] {
                return Err(vec![format!("`weight` has {} outputs but `bias` has {}", w[0], b[0])]);
            }
            Ok((w[1], w[0]))
        }
        Architecture::Mlp { layers, .. } if layers.len() >= 2 => Ok((layers[0], layers[layers.len() - 1])),
        Architecture::Mlp { .. } => Err(vec!["an mlp needs at least two `layers` (inputs and outputs)".into()]),
        Architecture::Custom(name) => Err(vec![format!("`{name}` is a Rust model: its shape comes from #[kiln::model(inputs, outputs)]")]),
    }
}

/// A model in memory, ready to run.
pub struct Loaded {
    device: Device,
    kind: Kind,
    pub inputs: usize,
    pub outputs: usize,
}

enum Kind {
    /// Weights (outputs × inputs) and biases (outputs × 1) per layer.
    Layers { layers: Vec<(Tensor, Tensor)>, hidden: Activation, output: Activation },
    Custom(Box<dyn custom::DynModel>),
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("device", &self.device).field("inputs", &self.inputs).field("outputs", &self.outputs).finish()
    }
}

impl Loaded {
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the model on `xt`, features × rows (a column-major batch: each
    /// feature column is one contiguous row of the tensor). Returns outputs × rows.
    pub fn forward_t(&self, xt: &Tensor) -> candle_core::Result<Tensor> {
        match &self.kind {
            Kind::Layers { layers, hidden, output } => {
                let mut h = xt.clone();
                for (i, (w, b)) in layers.iter().enumerate() {
                    h = w.matmul(&h)?.broadcast_add(b)?;
                    h = activate(&h, if i + 1 == layers.len() { *output } else { *hidden })?;
                }
                Ok(h)
            }
            Kind::Custom(m) => {
                // Custom models see rows × features, as PyTorch modules do.
                let y = m.forward(&xt.t()?.contiguous()?)?;
                match y.dims() {
                    [n] => y.reshape((1, *n)),
                    [_, _] => y.t()?.contiguous(),
                    dims => Err(candle_core::Error::Msg(format!("forward returned shape {dims:?}; expected [rows] or [rows, outputs]"))),
                }
            }
        }
    }
}

impl Loaded {
    /// Whether the outputs already are probabilities (a softmax or sigmoid last).
    pub fn outputs_are_probabilities(&self) -> bool {
        matches!(&self.kind, Kind::Layers { output: Activation::Softmax | Activation::Sigmoid, .. })
    }
}

/// Softmax over the outputs (dimension 0) of each row of an outputs × rows tensor.
pub(crate) fn softmax_outputs(x: &Tensor) -> candle_core::Result<Tensor> {
    activate(x, Activation::Softmax)
}

/// `act(x)` for outputs × rows; softmax runs over the outputs of each row.
fn activate(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    match act {
        Activation::Identity => Ok(x.clone()),
        Activation::Relu => x.relu(),
        Activation::Tanh => x.tanh(),
        Activation::Gelu => x.gelu_erf(),
        Activation::Sigmoid => (x.neg()?.exp()? + 1.0)?.recip(),
        Activation::Softmax => {
            let e = x.broadcast_sub(&x.max_keepdim(0)?)?.exp()?;
            e.broadcast_div(&e.sum_keepdim(0)?)
        }
    }
}

fn device(kind: ModelDevice) -> Result<Device, String> {
    match kind {
        ModelDevice::Cpu => Ok(Device::Cpu),
        ModelDevice::Auto => Device::cuda_if_available(0).map_err(|e| e.to_string()),
        ModelDevice::Cuda if !cfg!(feature = "cuda") => {
            Err("device = \"cuda\" but this binary was built without CUDA (the runtime's `cuda` feature)".into())
        }
        ModelDevice::Cuda => Device::new_cuda(0).map_err(|e| format!("no CUDA device: {e}")),
    }
}

/// Call first thing in `main`, before any thread starts.
///
/// candle's CPU matmul asks for its thread count on every call, and without
/// `RAYON_NUM_THREADS` that means reading /proc/cpuinfo (~50 µs, more than a
/// 1,024-row forward pass). Kiln sets it to 1 when unset: DataFusion's
/// partitions already keep every core busy, and a single-threaded gemm per
/// partition measured fastest (bench/inference.sh). Set the variable to change it.
pub fn init_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called from `main` before any other thread exists, so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
}

/// A model and the identity of its file (length, modification time): a file
/// replaced under a long-running executor is read again.
type CacheKey = (Model, u64, Option<std::time::SystemTime>);

static CACHE: LazyLock<Mutex<HashMap<CacheKey, Arc<Loaded>>>> = LazyLock::new(Default::default);
static LOADS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

/// How many times this process has read the model file at `path` (tests check
/// that a model is loaded once, not per batch or partition).
pub fn loads(path: &str) -> usize {
    LOADS.lock().unwrap_or_else(|e| e.into_inner()).get(path).copied().unwrap_or(0)
}

/// The model, loaded on first use and shared by every later caller.
pub fn load(model: &Model) -> Result<Arc<Loaded>, String> {
    let (len, modified) = if crate::storage::is_remote(&model.path) {
        remote_identity(&model.path).map_err(|e| format!("model `{}`: {e}", model.name))?
    } else {
        let meta = std::fs::metadata(&model.path).map_err(|e| format!("model `{}`: cannot open {}: {e}", model.name, model.path))?;
        (meta.len(), meta.modified().ok())
    };
    let key = (model.clone(), len, modified);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = cache.get(&key) {
        return Ok(m.clone());
    }
    let loaded = Arc::new(read(model).map_err(|e| format!("model `{}` ({}): {e}", model.name, model.path))?);
    *LOADS.lock().unwrap_or_else(|e| e.into_inner()).entry(model.path.clone()).or_default() += 1;
    // An older version of the same model is not used again.
    cache.retain(|(m, _, _), _| m != model);
    cache.insert(key, loaded.clone());
    Ok(loaded)
}

fn read(model: &Model) -> Result<Loaded, String> {
    let device = device(model.device)?;
    // A model on an object store is fetched whole into memory (models are small
    // next to data; candle reads the buffer as it reads a mapped file).
    let (infos, mut all) = if crate::storage::is_remote(&model.path) {
        let bytes = fetch(&model.path)?;
        let len: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| not_safetensors(&model.path, "shorter than 8 bytes".into()))?;
        let n = header_len(&model.path, len)?;
        let infos = parse_header(&model.path, bytes.get(8..8 + n).ok_or_else(|| not_safetensors(&model.path, "truncated header".into()))?)?;
        (infos, candle_core::safetensors::load_buffer(&bytes, &device).map_err(|e| e.to_string())?)
    } else {
        let path = Path::new(&model.path);
        (tensors(path)?, candle_core::safetensors::load(path, &device).map_err(|e| e.to_string())?)
    };
    let mut take = |name: &str| -> Result<Tensor, String> {
        all.remove(name).ok_or_else(|| format!("tensor `{name}` is missing"))?.to_dtype(DType::F32).map_err(|e| e.to_string())
    };
    let (kind, inputs, outputs) = match &model.architecture {
        Architecture::Custom(name) => {
            let m = custom::build(name, &mut all).map_err(|e| e.to_string())?;
            (Kind::Custom(m), model.inputs, model.outputs)
        }
        arch => {
            let (inputs, outputs) = shape_of(arch, &infos).map_err(|p| p.join("; "))?;
            let layer = |w: Tensor, b: Tensor| -> Result<(Tensor, Tensor), String> {
                let n = b.dims1().map_err(|e| e.to_string())?;
                Ok((w, b.reshape((n, 1)).map_err(|e| e.to_string())?))
            };
            let (layers, hidden, output) = match arch {
                Architecture::Linear => (vec![layer(take("weight")?, take("bias")?)?], Activation::Identity, Activation::Identity),
                Architecture::Logistic => {
                    let out = if outputs == 1 { Activation::Sigmoid } else { Activation::Softmax };
                    (vec![layer(take("weight")?, take("bias")?)?], Activation::Identity, out)
                }
                Architecture::Mlp { layers, activation, output_activation } => {
                    let ls = (0..layers.len() - 1)
                        .map(|i| layer(take(&format!("layers.{i}.weight"))?, take(&format!("layers.{i}.bias"))?))
                        .collect::<Result<Vec<_>, _>>()?;
                    (ls, *activation, *output_activation)
                }
                Architecture::Custom(_) => unreachable!("handled above"),
            };
            (Kind::Layers { layers, hidden, output }, inputs, outputs)
        }
    };
    if (inputs, outputs) != (model.inputs, model.outputs) {
        return Err(format!(
            "the file takes {inputs} features and returns {outputs} values, but the binary was checked against {} and {}: run `kiln build` again",
            model.inputs, model.outputs
        ));
    }
    Ok(Loaded { device, kind, inputs, outputs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, tensors: &[(&str, Tensor)]) -> std::path::PathBuf {
        let path = dir.join("m.safetensors");
        let map: HashMap<String, Tensor> = tensors.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    }

    fn model(path: &Path, architecture: Architecture, inputs: usize, outputs: usize) -> Model {
        Model { name: "m".into(), path: path.display().to_string(), architecture, device: ModelDevice::Cpu, inputs, outputs }
    }

    #[test]
    fn reads_header_and_checks_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let w = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[0.5f32, -0.5], &Device::Cpu).unwrap();
        let path = write(dir.path(), &[("weight", w), ("bias", b)]);
        let found = tensors(&path).unwrap();
        assert_eq!(found["weight"], TensorInfo { dtype: "F32".into(), shape: vec![2, 3] });
        assert_eq!(shape_of(&Architecture::Linear, &found), Ok((3, 2)));
        let mlp = Architecture::Mlp { layers: vec![3, 2], activation: Activation::Relu, output_activation: Activation::Identity };
        let err = shape_of(&mlp, &found).unwrap_err();
        assert!(err[0].contains("`layers.0.weight` [2, 3] is missing"), "{err:?}");
        // No outputs at all is not a model.
        let empty = write(dir.path(), &[("weight", Tensor::zeros((0, 3), DType::F32, &Device::Cpu).unwrap()), ("bias", Tensor::zeros(0, DType::F32, &Device::Cpu).unwrap())]);
        let err = shape_of(&Architecture::Linear, &tensors(&empty).unwrap()).unwrap_err();
        assert!(err.iter().any(|e| e.contains("empty dimension")), "{err:?}");
    }

    #[test]
    fn mlp_forward_matches_hand_computation() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        // 2 → 2 → 1: h = relu(W0 x + b0), y = sigmoid(W1 h + b1)
        let path = write(
            dir.path(),
            &[
                ("layers.0.weight", Tensor::new(&[[1f32, -1.], [0.5, 2.]], &dev).unwrap()),
                ("layers.0.bias", Tensor::new(&[0f32, -1.], &dev).unwrap()),
                ("layers.1.weight", Tensor::new(&[[1f32, 1.]], &dev).unwrap()),
                ("layers.1.bias", Tensor::new(&[0.25f32], &dev).unwrap()),
            ],
        );
        let arch = Architecture::Mlp { layers: vec![2, 2, 1], activation: Activation::Relu, output_activation: Activation::Sigmoid };
        let m = load(&model(&path, arch, 2, 1)).unwrap();
        // rows (x1, x2): (1, 2) and (3, -1), as features × rows
        let xt = Tensor::new(&[[1f32, 3.], [2., -1.]], &dev).unwrap();
        let y: Vec<f32> = m.forward_t(&xt).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        // row 1: h = relu(-1, 0.5+4-1=3.5) = (0, 3.5) → 3.75; row 2: h = relu(4, 1.5-2-1=-1.5) = (4, 0) → 4.25
        assert!((y[0] - sig(3.75)).abs() < 1e-6 && (y[1] - sig(4.25)).abs() < 1e-6, "{y:?}");
    }
}
