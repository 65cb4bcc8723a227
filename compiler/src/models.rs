//! Model files, read at compile time: the header of every `[models.NAME]`
//! safetensors file (tensor names, dtypes, shapes — not the weights; on an
//! object store, by range requests). With
//! [`crate::schemas`], the only pass input that touches the disk.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use kiln::models::TensorInfo;

use crate::spec::Spec;

/// Per model name: its tensors, or why the file could not be read.
pub type ModelFiles = HashMap<String, Result<BTreeMap<String, TensorInfo>, String>>;

/// Reads every model's header; relative paths are taken from `base` (the spec's directory);
/// `${params.X}` uses the param's default.
pub fn read(spec: &Spec, base: &Path) -> ModelFiles {
    spec.models
        .iter()
        .map(|m| {
            let text = crate::schemas::substitute_defaults(spec, m.path.as_str());
            if kiln::storage::is_remote(&text) {
                let found = crate::schemas::configure_options(&text, &m.storage_options).and_then(|()| kiln::models::tensors_at(&text)).map_err(|e| kiln::redact::text(&e));
                return (m.name.value.clone(), found);
            }
            let full = base.join(&text);
            let found = kiln::models::tensors(&full).map_err(|e| e.replace(&full.display().to_string(), &text));
            (m.name.value.clone(), found)
        })
        .collect()
}
