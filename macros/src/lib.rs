//! Kiln's procedural macros (`#[kiln::udf]`, `include_pipeline!`) arrive with the issues that need them.
