//! Run-time parameters: choosing each value and substituting `${...}` in strings.
//!
//! Precedence (SPEC.md §11): `--param NAME=v` beats the param's `env` variable,
//! which beats its `default`. Expressions hold typed placeholders that are bound
//! with [`ParamValues`]; strings such as paths are interpolated with [`interpolate`].

use std::collections::{BTreeMap, HashMap};

use datafusion::common::{ParamValues, ScalarValue};

use crate::plan::Param;
use crate::{Error, Result};

/// Chosen parameter values, by name.
#[derive(Debug, Clone, Default)]
pub struct Values(pub BTreeMap<String, ScalarValue>);

/// Picks each parameter's value. `overrides` are `--param` pairs; `env` reads a variable.
pub fn resolve(
    params: &[Param],
    overrides: &[(String, String)],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Values> {
    for (name, _) in overrides {
        if !params.iter().any(|p| &p.name == name) {
            let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "unknown parameter `{name}` (this pipeline has: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
    }
    let mut values = BTreeMap::new();
    for p in params {
        let flag = overrides.iter().rev().find(|(n, _)| n == &p.name).map(|(_, v)| v.clone());
        let from_env = match (&flag, p.env.as_deref()) {
            (None, Some(var)) => env(var).inspect(|v| crate::redact::remember(v, &format!("${{env.{var}}}"))),
            _ => None,
        };
        let value = match flag.or(from_env.clone()) {
            // A value read from the environment is never echoed (it may be a secret).
            Some(text) => ScalarValue::try_from_string(text.clone(), &p.data_type).map_err(|e| Error::Param {
                name: p.name.clone(),
                message: match (&from_env, p.env.as_deref()) {
                    (Some(_), Some(var)) => format!("the value of {var} is not a {}", p.data_type),
                    _ => format!("`{text}` is not a {}: {e}", p.data_type),
                },
            })?,
            None => p.default.clone().ok_or_else(|| Error::Param {
                name: p.name.clone(),
                message: match &p.env {
                    Some(var) => format!("no value: pass --param {}=… or set {var}", p.name),
                    None => format!("no value: pass --param {}=…", p.name),
                },
            })?,
        };
        values.insert(p.name.clone(), value);
    }
    Ok(Values(values))
}

impl Values {
    /// The values as DataFusion placeholder bindings (`$NAME`).
    pub fn to_param_values(&self) -> ParamValues {
        let map: HashMap<String, ScalarValue> =
            self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        ParamValues::from(map)
    }
}

/// Replaces `${params.X}` with the parameter's value and `${env.X}` with the
/// environment variable. A `$` not followed by `{` is kept as it is.
pub fn interpolate(
    text: &str,
    values: &Values,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::Usage(format!("unclosed `${{` in `{text}`")))?;
        let reference = &after[..end];
        let value = match reference.split_once('.') {
            Some(("params", name)) => match values.0.get(name) {
                Some(ScalarValue::Utf8(Some(s))) => s.clone(),
                Some(v) => v.to_string(),
                None => return Err(Error::Usage(format!("unknown parameter `{name}` in `{text}`"))),
            },
            Some(("env", name)) => env(name)
                .inspect(|v| crate::redact::remember(v, &format!("${{env.{name}}}")))
                .ok_or_else(|| Error::Usage(format!("environment variable `{name}` is not set (used in `{text}`)")))?,
            _ => return Err(Error::Usage(format!("`${{{reference}}}` in `{text}` is neither params.X nor env.X"))),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    fn param(name: &str, default: Option<ScalarValue>, env: Option<&str>) -> Param {
        Param {
            name: name.into(),
            data_type: DataType::Int64,
            default,
            env: env.map(String::from),
            description: String::new(),
        }
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let params = [param("n", Some(ScalarValue::Int64(Some(1))), Some("N"))];
        let env_set = |_: &str| Some("2".to_string());
        let env_unset = |_: &str| None;
        let flag = vec![("n".to_string(), "3".to_string())];
        assert_eq!(resolve(&params, &flag, env_set).unwrap().0["n"], ScalarValue::Int64(Some(3)));
        assert_eq!(resolve(&params, &[], env_set).unwrap().0["n"], ScalarValue::Int64(Some(2)));
        assert_eq!(resolve(&params, &[], env_unset).unwrap().0["n"], ScalarValue::Int64(Some(1)));
    }

    #[test]
    fn bad_values_are_errors() {
        let params = [param("n", None, None)];
        let err = resolve(&params, &[], |_| None).unwrap_err().to_string();
        assert!(err.contains("no value"), "{err}");
        let flag = vec![("n".to_string(), "many".to_string())];
        let err = resolve(&params, &flag, |_| None).unwrap_err().to_string();
        assert!(err.contains("`many` is not a Int64"), "{err}");
        let flag = vec![("m".to_string(), "1".to_string())];
        assert!(resolve(&params, &flag, |_| None).is_err());
    }

    #[test]
    fn interpolation() {
        let mut values = Values::default();
        values.0.insert("day".into(), ScalarValue::Utf8(Some("2024-01-02".into())));
        values.0.insert("n".into(), ScalarValue::Int64(Some(7)));
        let env = |name: &str| (name == "BUCKET").then(|| "b1".to_string());
        assert_eq!(
            interpolate("s3://${env.BUCKET}/${params.day}/part-${params.n}.csv", &values, env).unwrap(),
            "s3://b1/2024-01-02/part-7.csv"
        );
        assert_eq!(interpolate("cost$5", &values, env).unwrap(), "cost$5");
        assert!(interpolate("${env.MISSING}", &values, env).is_err());
        assert!(interpolate("${params.nope}", &values, env).is_err());
    }
}
