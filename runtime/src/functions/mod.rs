//! The function registry: every scalar, aggregate and window function a spec may
//! call, resolved by name.
//!
//! `kiln check` type-checks calls against it, generated code looks functions up in
//! it, and every session (local, and later Ballista scheduler and executors)
//! installs the same set, so a name always means the same function.

pub mod running_sum;
mod spark;
mod to_date;

use std::sync::{Arc, RwLock};

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::ScalarUDF;

static USER_UDFS: RwLock<Vec<Arc<ScalarUDF>>> = RwLock::new(Vec::new());
static REGISTRY: RwLock<Option<Arc<SessionState>>> = RwLock::new(None);

/// Makes functions (`#[kiln::udf]`s) known to the registry and to every
/// session created afterwards. Generated binaries call it first thing in `main`.
pub fn register_udfs(udfs: impl IntoIterator<Item = Arc<ScalarUDF>>) {
    let mut user = USER_UDFS.write().unwrap_or_else(|e| e.into_inner());
    for udf in udfs {
        user.retain(|u| u.name() != udf.name());
        user.push(udf);
    }
    // The next `registry()` call rebuilds it with them.
    *REGISTRY.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Kiln's own scalar functions: the registered `#[kiln::udf]`s.
pub fn kiln_udfs() -> Vec<Arc<ScalarUDF>> {
    USER_UDFS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Kiln's window functions that plans may name (a scheduler and executors decode them by name).
pub fn window_udfs() -> Vec<Arc<datafusion::logical_expr::WindowUDF>> {
    vec![running_sum::udwf()]
}

/// A session state holding DataFusion's built-in functions plus Kiln's.
/// It is only a registry: nothing is executed through it.
pub fn registry() -> Arc<SessionState> {
    if let Some(r) = REGISTRY.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return r.clone();
    }
    let mut guard = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(|| {
            let mut state = SessionStateBuilder::new().with_default_features().build();
            install(&mut state);
            Arc::new(state)
        })
        .clone()
}

/// Registers Kiln's functions on a session state, and Kiln's faster
/// implementations of some built-ins (same names, same results).
pub fn install(state: &mut SessionState) {
    use datafusion::execution::FunctionRegistry;
    if let Ok(inner) = state.udf("to_date") {
        if inner.inner().downcast_ref::<to_date::ToDate>().is_none() {
            let _ = state.register_udf(Arc::new(ScalarUDF::new_from_impl(to_date::ToDate::new(inner))));
        }
    }
    spark::install(state);
    for udwf in window_udfs() {
        let _ = state.register_udwf(udwf);
    }
    for udf in kiln_udfs() {
        // Registering returns the function it replaced, if any; there is none to keep.
        let _ = state.register_udf(udf);
    }
}
