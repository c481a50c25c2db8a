//! A Service's topology keys: the annotation `nftopo.io/topology-keys`, or
//! `spec.topologyKeys` (the original ServiceTopology, alpha in Kubernetes
//! 1.17–1.21), validated with the API server's rules of the time.

use api_watch::{Service, TOPOLOGY_KEYS_ANNOTATION};

/// The most keys a Service may list (`MaxServiceTopologyKeys`).
pub const MAX_TOPOLOGY_KEYS: usize = 16;

/// The key that matches every endpoint; only allowed last.
pub const ANY_KEY: &str = "*";

/// Why a Service's topology keys cannot be used. Planning reports it as a
/// [`crate::Problem`] and treats the Service as if it had no topology keys,
/// so its traffic keeps flowing; the fix is to correct the Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyKeysError {
    /// An entry is empty (e.g. `"a,,b"` or a trailing comma).
    #[error("topology key {index} is empty")]
    EmptyKey {
        /// 0-based position of the key.
        index: usize,
    },
    /// `*` appears before the last position, which would make the keys
    /// after it unreachable.
    #[error("\"*\" must be the last topology key, but it is key {index} of {count}")]
    WildcardNotLast {
        /// 0-based position of the `*`.
        index: usize,
        /// How many keys there are.
        count: usize,
    },
    /// More keys than the API ever allowed.
    #[error("{count} topology keys are more than the {MAX_TOPOLOGY_KEYS} allowed")]
    TooManyKeys {
        /// How many keys there are.
        count: usize,
    },
    /// The same key is listed twice.
    #[error("topology key {key:?} is listed more than once")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// The key is not a qualified label name (`[prefix/]name`).
    #[error("topology key {key:?} is not a qualified label name: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Which part of the rule it breaks.
        reason: String,
    },
}

/// The Service's ordered topology keys. The annotation
/// `nftopo.io/topology-keys` (comma-separated, entries trimmed) wins over
/// `spec.topologyKeys`; `Ok(None)` when neither is set (or the spec's list
/// is empty, which Kubernetes treats as unset).
pub fn topology_keys(service: &Service) -> Result<Option<Vec<String>>, TopologyKeysError> {
    let keys: Vec<String> = match service.annotations.get(TOPOLOGY_KEYS_ANNOTATION) {
        Some(written) => written.split(',').map(|k| k.trim().to_string()).collect(),
        None => match &service.topology_keys {
            Some(keys) if !keys.is_empty() => keys.clone(),
            _ => return Ok(None),
        },
    };
    validate(&keys)?;
    Ok(Some(keys))
}

/// Where [`topology_keys`] reads the keys from, for messages.
pub(crate) fn keys_source(service: &Service) -> String {
    if service.annotations.contains_key(TOPOLOGY_KEYS_ANNOTATION) {
        format!("annotation {TOPOLOGY_KEYS_ANNOTATION}")
    } else {
        "spec.topologyKeys".to_string()
    }
}

fn validate(keys: &[String]) -> Result<(), TopologyKeysError> {
    let count = keys.len();
    if count > MAX_TOPOLOGY_KEYS {
        return Err(TopologyKeysError::TooManyKeys { count });
    }
    for (index, key) in keys.iter().enumerate() {
        if key.is_empty() {
            return Err(TopologyKeysError::EmptyKey { index });
        }
        if keys[..index].contains(key) {
            return Err(TopologyKeysError::DuplicateKey { key: key.clone() });
        }
        if key == ANY_KEY {
            if index + 1 != count {
                return Err(TopologyKeysError::WildcardNotLast { index, count });
            }
            continue;
        }
        if let Err(reason) = qualified_name(key) {
            return Err(TopologyKeysError::InvalidKey {
                key: key.clone(),
                reason: reason.to_string(),
            });
        }
    }
    Ok(())
}

/// Kubernetes' `IsQualifiedName`: an optional DNS-subdomain prefix and `/`,
/// then a name of at most 63 characters, alphanumeric at both ends, with
/// `-`, `_` and `.` inside.
fn qualified_name(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) => {
            dns_subdomain(prefix)?;
            name
        }
    };
    if name.is_empty() {
        return Err("the name part is empty");
    }
    if name.len() > 63 {
        return Err("the name part is longer than 63 characters");
    }
    let inner_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(inner_ok) {
        return Err("the name part may only contain letters, digits, '-', '_' and '.'");
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err("the name part must start and end with a letter or digit");
    }
    Ok(())
}

/// RFC 1123 subdomain: at most 253 characters, dot-separated labels of
/// lowercase letters, digits and `-`, alphanumeric at both ends.
fn dns_subdomain(prefix: &str) -> Result<(), &'static str> {
    const ERROR: &str = "the prefix before '/' must be a lowercase DNS subdomain";
    if prefix.is_empty() || prefix.len() > 253 {
        return Err(ERROR);
    }
    for label in prefix.split('.') {
        let bytes = label.as_bytes();
        let inner_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        let ends_ok = |b: Option<&u8>| b.is_some_and(|b| *b != b'-');
        if !inner_ok || !ends_ok(bytes.first()) || !ends_ok(bytes.last()) {
            return Err(ERROR);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn service(annotation: Option<&str>, spec: Option<&[&str]>) -> Service {
        let mut annotations = BTreeMap::new();
        if let Some(a) = annotation {
            annotations.insert(TOPOLOGY_KEYS_ANNOTATION.to_string(), a.to_string());
        }
        Service {
            annotations,
            topology_keys: spec.map(|keys| keys.iter().map(|k| k.to_string()).collect()),
            ..Service::default()
        }
    }

    fn keys(keys: &[&str]) -> Option<Vec<String>> {
        Some(keys.iter().map(|k| k.to_string()).collect())
    }

    #[test]
    fn topology_keys_follow_the_service_topology_rules() {
        let long_name = "a".repeat(64);
        let many: Vec<String> = (0..17).map(|i| format!("k{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let invalid = |key: &str, reason: &str| {
            Err(TopologyKeysError::InvalidKey {
                key: key.into(),
                reason: reason.into(),
            })
        };
        type Want = Result<Option<Vec<String>>, TopologyKeysError>;
        let cases: Vec<(&str, Service, Want)> = vec![
            (
                "a service without keys has none",
                service(None, None),
                Ok(None),
            ),
            (
                "an empty spec list counts as unset",
                service(None, Some(&[])),
                Ok(None),
            ),
            (
                "spec.topologyKeys are used in order",
                service(
                    None,
                    Some(&["kubernetes.io/hostname", "topology.kubernetes.io/zone", "*"]),
                ),
                Ok(keys(&[
                    "kubernetes.io/hostname",
                    "topology.kubernetes.io/zone",
                    "*",
                ])),
            ),
            (
                "the annotation wins over spec.topologyKeys and its entries are trimmed",
                service(
                    Some(" kubernetes.io/hostname , * "),
                    Some(&["topology.kubernetes.io/zone"]),
                ),
                Ok(keys(&["kubernetes.io/hostname", "*"])),
            ),
            (
                "an empty entry in the annotation is an error",
                service(Some("kubernetes.io/hostname,,*"), None),
                Err(TopologyKeysError::EmptyKey { index: 1 }),
            ),
            (
                "an empty annotation is an error, not a way to unset the keys",
                service(Some(""), Some(&["kubernetes.io/hostname"])),
                Err(TopologyKeysError::EmptyKey { index: 0 }),
            ),
            (
                "\"*\" before the last key is an error",
                service(None, Some(&["*", "kubernetes.io/hostname"])),
                Err(TopologyKeysError::WildcardNotLast { index: 0, count: 2 }),
            ),
            (
                "more than 16 keys is an error",
                service(None, Some(&many)),
                Err(TopologyKeysError::TooManyKeys { count: 17 }),
            ),
            (
                "a duplicate key is an error",
                service(Some("zone,rack,zone"), None),
                Err(TopologyKeysError::DuplicateKey { key: "zone".into() }),
            ),
            (
                "a key with an uppercase prefix is not a qualified name",
                service(None, Some(&["Example.com/zone"])),
                invalid(
                    "Example.com/zone",
                    "the prefix before '/' must be a lowercase DNS subdomain",
                ),
            ),
            (
                "a key with two slashes is not a qualified name",
                service(None, Some(&["a/b/c"])),
                invalid(
                    "a/b/c",
                    "the name part may only contain letters, digits, '-', '_' and '.'",
                ),
            ),
            (
                "a key with an empty name is not a qualified name",
                service(None, Some(&["example.com/"])),
                invalid("example.com/", "the name part is empty"),
            ),
            (
                "a key ending in a dash is not a qualified name",
                service(None, Some(&["zone-"])),
                invalid(
                    "zone-",
                    "the name part must start and end with a letter or digit",
                ),
            ),
            (
                "a key name longer than 63 characters is not a qualified name",
                service(None, Some(&[long_name.as_str()])),
                invalid(&long_name, "the name part is longer than 63 characters"),
            ),
            (
                "a name may hold upper case, dots and underscores inside",
                service(None, Some(&["example.com/My_rack.id"])),
                Ok(keys(&["example.com/My_rack.id"])),
            ),
        ];
        for (name, service, want) in cases {
            assert_eq!(topology_keys(&service), want, "{name}");
        }
    }

    #[test]
    fn errors_name_the_rule_broken() {
        let cases = [
            (
                TopologyKeysError::EmptyKey { index: 1 },
                "topology key 1 is empty",
            ),
            (
                TopologyKeysError::WildcardNotLast { index: 0, count: 2 },
                "\"*\" must be the last topology key, but it is key 0 of 2",
            ),
            (
                TopologyKeysError::TooManyKeys { count: 17 },
                "17 topology keys are more than the 16 allowed",
            ),
            (
                TopologyKeysError::DuplicateKey { key: "zone".into() },
                "topology key \"zone\" is listed more than once",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
    }
}
