//! The function registry: every scalar, aggregate and window function a spec may
//! call, resolved by name.
//!
//! `kiln check` type-checks calls against it, generated code looks functions up in
//! it, and every session (local, and later Ballista scheduler and executors)
//! installs the same set, so a name always means the same function.

mod to_date;

use std::sync::{Arc, OnceLock};

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::ScalarUDF;

/// Kiln's own scalar functions (added by later issues: `#[kiln::udf]`s).
pub fn kiln_udfs() -> Vec<Arc<ScalarUDF>> {
    Vec::new()
}

/// A session state holding DataFusion's built-in functions plus Kiln's.
/// It is only a registry: nothing is executed through it.
pub fn registry() -> &'static SessionState {
    static REGISTRY: OnceLock<SessionState> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut state = SessionStateBuilder::new().with_default_features().build();
        install(&mut state);
        state
    })
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
    for udf in kiln_udfs() {
        // Registering returns the function it replaced, if any; there is none to keep.
        let _ = state.register_udf(udf);
    }
}
