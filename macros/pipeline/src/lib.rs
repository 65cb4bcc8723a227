//! `kiln::include_pipeline!("specs/etl.toml")`, re-exported by the `kiln` crate.
//!
//! Checks the spec while the crate compiles (every pass of `kiln check`); an
//! error in the spec becomes a compile error listing each diagnostic with the
//! spec's file, line and column. Otherwise it expands to a module named after
//! the pipeline with `pipeline()`, `register()`, `build(ctx, params)` and
//! `run(params)`. The path is relative to the crate's directory
//! (`CARGO_MANIFEST_DIR`); the expansion includes the spec's bytes so that
//! cargo rebuilds the crate when the spec changes.

use proc_macro::TokenStream;
use quote::quote;
use syn::{LitStr, parse_macro_input};

#[proc_macro]
pub fn include_pipeline(input: TokenStream) -> TokenStream {
    let lit = parse_macro_input!(input as LitStr);
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_default();
    let spec = dir.join(lit.value());
    match kiln_compiler::embed::module(&spec) {
        Ok((_, module)) => {
            let track = spec.display().to_string();
            quote!(
                const _: &[u8] = include_bytes!(#track);
                #module
            )
            .into()
        }
        Err(diagnostics) => {
            let message = format!("kiln: {} does not check:\n{diagnostics}", lit.value());
            syn::Error::new(lit.span(), message).to_compile_error().into()
        }
    }
}
