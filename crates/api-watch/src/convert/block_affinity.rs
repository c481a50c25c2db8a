//! `crd.projectcalico.org/v1 BlockAffinity` → [`BlockAffinity`].
//!
//! Calico's CRD has no k8s-openapi type, so both sources hand over the
//! object as JSON: its name and its `spec`.

use serde_json::Value;

use super::FieldError;
use crate::BlockAffinity;

/// The API group and version of Calico's IPAM objects.
pub(crate) const API_VERSION: &str = "crd.projectcalico.org/v1";

/// Converts a BlockAffinity from its `metadata.name` and `spec`.
pub(crate) fn block_affinity(
    name: Option<&str>,
    spec: &Value,
) -> Result<BlockAffinity, FieldError> {
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| FieldError::new("metadata.name", "missing"))?;
    if !spec.is_object() {
        return Err(FieldError::new("spec", "missing or not an object"));
    }
    let text = |field: &str| -> Result<String, FieldError> {
        match &spec[field] {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Null => Err(FieldError::new(format!("spec.{field}"), "missing")),
            other => Err(FieldError::new(
                format!("spec.{field}"),
                format!("expected a non-empty string, found {other}"),
            )),
        }
    };
    // `deleted` is a string in Calico's v1 CRD ("true"/"false"); accept a
    // boolean too.
    let deleted = match &spec["deleted"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) if s == "true" => true,
        Value::String(s) if s == "false" || s.is_empty() => false,
        other => {
            return Err(FieldError::new(
                "spec.deleted",
                format!("expected \"true\" or \"false\", found {other}"),
            ))
        }
    };
    Ok(BlockAffinity {
        name: name.to_string(),
        cidr: text("cidr")?,
        node: text("node")?,
        state: text("state")?,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_calicos_spec() {
        let spec = json!({"cidr": "10.42.54.128/26", "node": "node-3", "state": "confirmed", "deleted": "false"});
        let b = block_affinity(Some("node-3-10-42-54-128-26"), &spec).unwrap();
        assert_eq!(
            b,
            BlockAffinity {
                name: "node-3-10-42-54-128-26".into(),
                cidr: "10.42.54.128/26".into(),
                node: "node-3".into(),
                state: "confirmed".into(),
                deleted: false,
            }
        );
        let gone =
            json!({"cidr": "10.42.0.0/26", "node": "n", "state": "confirmed", "deleted": "true"});
        assert!(block_affinity(Some("x"), &gone).unwrap().deleted);
    }

    #[test]
    fn names_the_bad_field() {
        let cases = [
            (json!({"node": "n", "state": "confirmed"}), "spec.cidr"),
            (
                json!({"cidr": "10.0.0.0/26", "node": 3, "state": "confirmed"}),
                "spec.node",
            ),
            (json!({"cidr": "10.0.0.0/26", "node": "n"}), "spec.state"),
            (
                json!({"cidr": "10.0.0.0/26", "node": "n", "state": "confirmed", "deleted": "maybe"}),
                "spec.deleted",
            ),
            (json!(null), "spec"),
        ];
        for (spec, field) in cases {
            let e = block_affinity(Some("b"), &spec).unwrap_err();
            assert_eq!(e.field, field, "{spec}");
        }
        let e = block_affinity(None, &json!({})).unwrap_err();
        assert_eq!(e.field, "metadata.name");
    }
}
