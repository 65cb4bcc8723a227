//! What a runtime built without one of its optional features has in the feature's
//! place: the names the rest of the runtime uses, each refusing with [`missing`].
//!
//! `kiln build` switches on the features a spec uses (compiler/src/codegen), so a
//! generated job never reaches these. A Rust-API pipeline that turns the runtime's
//! default features off does, before anything is read or written.

use crate::Error;

/// The error of a feature this binary was built without.
pub fn missing(feature: &str, what: &str) -> Error {
    Error::Usage(format!(
        "{what} needs Kiln's `{feature}` runtime feature, and this binary was built without it \
         (`kiln build` enables the features a spec uses; a Rust-API pipeline enables it on kiln-runtime)"
    ))
}

/// `sources::delta` without the `delta` feature.
#[cfg(not(feature = "delta"))]
pub mod delta_source {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Schema;
    use datafusion::catalog::TableProvider;
    use datafusion::prelude::SessionContext;

    use crate::Result;
    use crate::plan::DeltaSource;

    pub async fn provider(_: &SessionContext, location: &str, _: &DeltaSource, _: &Schema) -> Result<Arc<dyn TableProvider>> {
        Err(super::missing("delta", &format!("the Delta table {}", crate::redact::text(location))))
    }
}

/// `sinks::delta` without the `delta` feature.
#[cfg(not(feature = "delta"))]
pub mod delta_sink {
    use datafusion::dataframe::DataFrame;

    use crate::Result;
    use crate::plan::Sink;

    /// Never made: [`exists`] refuses first.
    #[derive(Debug)]
    pub enum Held {}

    impl Held {
        pub async fn commit(self, _: &str) -> Result<()> {
            match self {}
        }

        pub async fn abort(self) {
            match self {}
        }
    }

    pub async fn exists(location: &str) -> Result<bool> {
        Err(super::missing("delta", &format!("the Delta table {}", crate::redact::text(location))))
    }

    pub async fn stage(_: DataFrame, _: &Sink, location: &str, _: bool, _: Option<&(String, i64)>) -> Result<(Held, u64)> {
        Err(exists(location).await.err().expect("refuses"))
    }
}

/// `streaming::kafka` without the `kafka` feature.
#[cfg(not(feature = "kafka"))]
pub mod kafka_source {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::SchemaRef;

    use crate::Result;
    use crate::plan::KafkaSource;

    pub type Ranges = BTreeMap<i32, (i64, i64)>;

    /// Never made: [`Topic::connect`] refuses.
    pub struct Topic {
        pub earliest: bool,
        never: std::convert::Infallible,
    }

    impl Topic {
        pub fn connect(_: &str, k: &KafkaSource, brokers: &str, _: &[(String, String)], _: SchemaRef) -> Result<Topic> {
            Err(super::missing("kafka", &format!("kafka {brokers}/{}", k.topic)))
        }

        pub fn offsets(&self) -> Result<Ranges> {
            match self.never {}
        }

        pub fn plan(&self, _: &BTreeMap<i32, i64>, _: &Ranges) -> Ranges {
            match self.never {}
        }

        pub fn read(&self, _: &Ranges) -> Result<RecordBatch> {
            match self.never {}
        }
    }
}
