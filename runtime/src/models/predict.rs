//! The `predict` transform's function: a model over Arrow batches.
//!
//! DataFusion hands the function whole record batches; it cuts them into
//! `batch_size` rows, copies each feature column's slice into one contiguous
//! features × rows buffer (a memcpy per column, no per-row work), runs the
//! model and writes the scores straight into a `Float32Array`. A row with a
//! null feature gets a null score. The model is loaded on the first batch and
//! shared by every partition ([`super::load`]).

use std::sync::Arc;

use candle_core::Tensor;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float32Array, Int32Array, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float32Type};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use crate::plan::{Features, Model};

/// `kiln_predict_NODE(path, features…)`: a score per row, or `{class,
/// probability}` for a model with several outputs. The model file's path is
/// the first argument (a literal of the plan, parameters already bound), so a
/// plan shipped to Ballista executors names the file the client chose; the
/// architecture and shapes are the binary's own.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Predict {
    name: String,
    model: Model,
    /// The features arrive as one list column (else one column each).
    list: bool,
    batch_size: usize,
    signature: Signature,
}

impl Predict {
    /// The function of `predict` node `node` (its name: one per node, so that
    /// nodes sharing a model with other features or batch sizes stay apart).
    pub fn new(node: &str, model: Model, features: &Features, batch_size: usize) -> Self {
        let (list, args) = match features {
            Features::Columns(c) => (false, c.len()),
            Features::List(_) => (true, 1),
        };
        Predict {
            name: format!("kiln_predict_{node}"),
            model,
            list,
            batch_size: batch_size.max(1),
            signature: Signature::any(args + 1, Volatility::Immutable),
        }
    }

    /// The result type for a model with `outputs` values per row.
    pub fn output_type(outputs: usize) -> DataType {
        if outputs == 1 { DataType::Float32 } else { DataType::Struct(Self::class_fields()) }
    }

    fn class_fields() -> Fields {
        Fields::from(vec![Field::new("class", DataType::Int32, true), Field::new("probability", DataType::Float32, true)])
    }
}

impl ScalarUDFImpl for Predict {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(Self::output_type(self.model.outputs))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (path, features) = match args.args.split_first() {
            Some((ColumnarValue::Scalar(p), rest)) => match p.try_as_str() {
                Some(Some(path)) => (path.to_string(), rest),
                _ => return exec_err!("{}: the model path is not a string", self.name),
            },
            _ => return exec_err!("{}: the first argument is the model's path", self.name),
        };
        let arrays = features.iter().map(|v| v.to_array(rows)).collect::<Result<Vec<_>>>()?;
        let model = super::load(&Model { path, ..self.model.clone() }).map_err(DataFusionError::Execution)?;
        let k = model.inputs;
        let err = |e: candle_core::Error| DataFusionError::Execution(format!("model `{}`: {e}", self.model.name));
        let mut nulls: Option<NullBuffer> = None;
        for a in &arrays {
            nulls = NullBuffer::union(nulls.as_ref(), a.logical_nulls().as_ref());
        }
        if self.list {
            nulls = NullBuffer::union(nulls.as_ref(), list_element_nulls(&arrays[0]).as_ref());
        }
        let features = Batch::new(&arrays, self.list, k, nulls.as_ref())?;
        let o = model.outputs;
        let mut scores: Vec<f32> = Vec::with_capacity(if o == 1 { rows } else { 0 });
        let (mut classes, mut probs): (Vec<i32>, Vec<f32>) = Default::default();
        let mut start = 0;
        while start < rows {
            let len = self.batch_size.min(rows - start);
            let xt = features.tensor(start, len, model.device()).map_err(err)?;
            let y = model.forward_t(&xt).map_err(err)?; // outputs × len
            if y.dims() != [o, len] {
                return exec_err!("model `{}` returned shape {:?} for {len} rows; expected [{o}, {len}]", self.model.name, y.dims());
            }
            if o == 1 {
                scores.extend(y.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err)?);
            } else {
                classes.extend(y.argmax(0).and_then(|t| t.to_vec1::<u32>()).map_err(err)?.into_iter().map(|c| c as i32));
                // The class's probability: the model's own when its last activation gives
                // probabilities (softmax, sigmoid), else the softmax of its outputs.
                let p = if model.outputs_are_probabilities() { y } else { super::softmax_outputs(&y).map_err(err)? };
                probs.extend(p.max(0).and_then(|t| t.to_vec1::<f32>()).map_err(err)?);
            }
            start += len;
        }
        let out: ArrayRef = if o == 1 {
            Arc::new(Float32Array::new(scores.into(), nulls))
        } else {
            let class: ArrayRef = Arc::new(Int32Array::new(classes.into(), nulls.clone()));
            let prob: ArrayRef = Arc::new(Float32Array::new(probs.into(), nulls.clone()));
            Arc::new(StructArray::try_new(Self::class_fields(), vec![class, prob], nulls)?)
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Rows of a list column holding a null element (their score is null too).
fn list_element_nulls(list: &ArrayRef) -> Option<NullBuffer> {
    let (values, offsets): (&ArrayRef, Vec<usize>) = match list.data_type() {
        DataType::FixedSizeList(_, n) => {
            let l = list.as_fixed_size_list();
            let n = *n as usize;
            (l.values(), (0..=l.len()).map(|i| (l.offset() + i) * n).collect())
        }
        DataType::List(_) => (list.as_list::<i32>().values(), list.as_list::<i32>().value_offsets().iter().map(|o| *o as usize).collect()),
        DataType::LargeList(_) => (list.as_list::<i64>().values(), list.as_list::<i64>().value_offsets().iter().map(|o| *o as usize).collect()),
        _ => return None,
    };
    let inner = values.logical_nulls().filter(|n| n.null_count() > 0)?;
    let valid: Vec<bool> = offsets.windows(2).map(|w| (w[0]..w[1]).all(|j| inner.is_valid(j))).collect();
    Some(NullBuffer::from(valid))
}

/// A batch's features as f32, ready to be cut into tensors.
enum Batch {
    /// One f32 array per feature.
    Columns(Vec<ArrayRef>),
    /// A list column's f32 values: row-major, `k` per row, the first row at `first`.
    Rows { values: ArrayRef, first: usize, k: usize },
}

impl Batch {
    fn new(arrays: &[ArrayRef], list: bool, k: usize, nulls: Option<&NullBuffer>) -> Result<Batch> {
        if !list {
            if arrays.len() != k {
                return exec_err!("the model takes {k} features, the node passes {}", arrays.len());
            }
            let cols = arrays.iter().map(|a| cast(a, &DataType::Float32)).collect::<Result<Vec<_>, _>>()?;
            return Ok(Batch::Columns(cols));
        }
        let list = &arrays[0];
        let (values, offsets): (ArrayRef, Option<Vec<usize>>) = match list.data_type() {
            DataType::FixedSizeList(_, n) if *n as usize == k => (list.as_fixed_size_list().values().clone(), None),
            DataType::FixedSizeList(_, n) => return exec_err!("the feature list holds {n} values; the model takes {k}"),
            DataType::List(_) => {
                let l = list.as_list::<i32>();
                (l.values().clone(), Some(l.value_offsets().iter().map(|o| *o as usize).collect()))
            }
            DataType::LargeList(_) => {
                let l = list.as_list::<i64>();
                (l.values().clone(), Some(l.value_offsets().iter().map(|o| *o as usize).collect()))
            }
            other => return exec_err!("features must be a list of numbers, not {other}"),
        };
        let values = cast(&values, &DataType::Float32)?;
        let Some(offsets) = offsets else {
            let first = list.as_fixed_size_list().offset() * k;
            return Ok(Batch::Rows { values, first, k });
        };
        // A list array may hold rows of any length: every non-null row must hold k.
        let dense = (0..list.len()).all(|i| offsets[i + 1] - offsets[i] == k);
        if dense {
            return Ok(Batch::Rows { values, first: offsets[0], k });
        }
        let values = values.as_primitive::<Float32Type>().values();
        let mut out = vec![0f32; list.len() * k];
        for i in 0..list.len() {
            let (s, e) = (offsets[i], offsets[i + 1]);
            if nulls.is_some_and(|n| n.is_null(i)) {
                continue;
            }
            if e - s != k {
                return exec_err!("row {i} of the batch has {} features; the model takes {k}", e - s);
            }
            out[i * k..(i + 1) * k].copy_from_slice(&values[s..e]);
        }
        Ok(Batch::Rows { values: Arc::new(Float32Array::from(out)), first: 0, k })
    }

    /// Rows `start..start + len` as a features × rows tensor.
    fn tensor(&self, start: usize, len: usize, device: &candle_core::Device) -> candle_core::Result<Tensor> {
        match self {
            Batch::Columns(cols) => {
                let mut buf = Vec::with_capacity(cols.len() * len);
                for c in cols {
                    buf.extend_from_slice(&c.as_primitive::<Float32Type>().values()[start..start + len]);
                }
                Tensor::from_vec(buf, (cols.len(), len), device)
            }
            Batch::Rows { values, first, k } => {
                let values = &values.as_primitive::<Float32Type>().values()[first + start * k..first + (start + len) * k];
                Tensor::from_slice(values, (len, *k), device)?.t()
            }
        }
    }
}
