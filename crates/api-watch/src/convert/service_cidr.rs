//! `networking.k8s.io/v1 ServiceCIDR` → [`ServiceCidr`].

use k8s_openapi::api::networking::v1 as networking;

use super::{name_of, parse_cidr_sloppy, FieldError};
use crate::ServiceCidr;

/// Converts a `networking.k8s.io/v1 ServiceCIDR`: every `spec.cidrs`
/// entry must be an IP prefix (read as kube-proxy reads it), kept as its
/// network with host bits cleared. No prefix at all is allowed (the
/// object then holds no addresses).
pub(crate) fn service_cidr(object: &networking::ServiceCIDR) -> Result<ServiceCidr, FieldError> {
    let name = name_of(&object.metadata)?;
    let written = object
        .spec
        .as_ref()
        .and_then(|s| s.cidrs.as_deref())
        .unwrap_or_default();
    let cidrs = written
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let cidr = parse_cidr_sloppy(s).ok_or_else(|| {
                FieldError::new(
                    format!("spec.cidrs[{i}]"),
                    format!("{s:?} is not an IP prefix (like 10.43.0.0/16 or fd00:43::/112)"),
                )
            })?;
            Ok(cidr.to_string())
        })
        .collect::<Result<_, _>>()?;
    Ok(ServiceCidr { name, cidrs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(value: serde_json::Value) -> Result<ServiceCidr, FieldError> {
        service_cidr(&serde_json::from_value(value).unwrap())
    }

    #[test]
    fn prefixes_are_read_as_kube_proxy_reads_them() {
        let cases = [
            (
                "both families, as written",
                json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.43.0.0/16", "fd00:43::/112"]}}),
                Ok(vec!["10.43.0.0/16", "fd00:43::/112"]),
            ),
            (
                "host bits are cleared and leading zeros are decimal",
                json!({"metadata": {"name": "extra"}, "spec": {"cidrs": ["10.044.1.2/16"]}}),
                Ok(vec!["10.44.0.0/16"]),
            ),
            (
                "no spec holds no prefix",
                json!({"metadata": {"name": "empty"}}),
                Ok(vec![]),
            ),
            (
                "a prefix that is not one skips the object, naming the field",
                json!({"metadata": {"name": "bad"}, "spec": {"cidrs": ["10.43.0.0/16", "10.43.0.0"]}}),
                Err("spec.cidrs[1]"),
            ),
        ];
        for (name, value, want) in cases {
            let got = convert(value);
            match want {
                Ok(cidrs) => assert_eq!(got.unwrap().cidrs, cidrs, "{name}"),
                Err(field) => assert_eq!(got.unwrap_err().field, field, "{name}"),
            }
        }
    }
}
