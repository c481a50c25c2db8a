//! Kubernetes' rules for object and port names
//! (`k8s.io/apimachinery/pkg/util/validation`). The API server enforces
//! them, so only manifest files can break them; nftopo checks them in the
//! converters that both sources share, so that a name nftopo could not
//! put into a chain name or one log line never reaches the planner.

/// `IsDNS1123Label`: at most 63 characters, lowercase letters, digits and
/// `-`, starting and ending with a letter or digit (namespaces, service
/// and EndpointSlice port names).
pub(crate) fn dns1123_label(s: &str) -> Result<(), String> {
    label(s, 63, |b| b.is_ascii_lowercase() || b.is_ascii_digit())
        .map_err(|why| format!("{:?} is not a DNS-1123 label: {why}", shorten(s)))
}

/// `IsDNS1035Label`: like a DNS-1123 label, but starting with a letter
/// (Service names).
pub(crate) fn dns1035_label(s: &str) -> Result<(), String> {
    label(s, 63, |b| b.is_ascii_lowercase())
        .map_err(|why| format!("{:?} is not a DNS-1035 label: {why}", shorten(s)))
}

/// `IsDNS1123Subdomain`: at most 253 characters, DNS-1123 labels joined
/// by `.` (EndpointSlice and Node names).
pub(crate) fn dns1123_subdomain(s: &str) -> Result<(), String> {
    let check = || {
        if s.len() > 253 {
            return Err(format!("{} bytes long, at most 253 allowed", s.len()));
        }
        s.split('.')
            .try_for_each(|part| label(part, 253, |b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    };
    check().map_err(|why| format!("{:?} is not a DNS-1123 subdomain: {why}", shorten(s)))
}

fn label(s: &str, max: usize, first_ok: impl Fn(u8) -> bool) -> Result<(), String> {
    let bytes = s.as_bytes();
    let inner_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    match (bytes.first(), bytes.last()) {
        (None, _) | (_, None) => Err("empty".into()),
        _ if bytes.len() > max => Err(format!("{} bytes long, at most {max} allowed", s.len())),
        (Some(&f), _) if !first_ok(f) => Err("bad first character".into()),
        (_, Some(&l)) if !(l.is_ascii_lowercase() || l.is_ascii_digit()) => {
            Err("must end with a lowercase letter or digit".into())
        }
        _ if !bytes.iter().all(|&b| inner_ok(b)) => {
            Err("only lowercase letters, digits and '-' are allowed".into())
        }
        _ => Ok(()),
    }
}

/// A name short enough for one log line: the first 80 characters and the
/// length when it is longer.
pub(crate) fn shorten(s: &str) -> String {
    const KEEP: usize = 80;
    match s.char_indices().nth(KEEP) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &s[..cut], s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_validation() {
        let long_label = "a".repeat(64);
        let long_subdomain = format!("{0}.{0}.{0}.{0}", "a".repeat(63));
        type Check = fn(&str) -> Result<(), String>;
        let cases: [(&str, Check, &str, bool); 17] = [
            (
                "a plain label is a DNS-1123 label",
                dns1123_label,
                "kube-system",
                true,
            ),
            (
                "a label may start with a digit",
                dns1123_label,
                "0abc",
                true,
            ),
            ("an empty label is not", dns1123_label, "", false),
            (
                "an uppercase letter is not allowed",
                dns1123_label,
                "Web",
                false,
            ),
            ("a label may not end with '-'", dns1123_label, "web-", false),
            (
                "a label may not start with '-'",
                dns1123_label,
                "-web",
                false,
            ),
            (
                "64 characters are too many",
                dns1123_label,
                &long_label,
                false,
            ),
            (
                "a quote, a newline or a brace are not allowed",
                dns1123_label,
                "a\"\n{",
                false,
            ),
            ("a NUL is not allowed", dns1123_label, "a\0b", false),
            (
                "non-ASCII letters are not allowed",
                dns1123_label,
                "ümlaut",
                false,
            ),
            (
                "a service name must start with a letter",
                dns1035_label,
                "0web",
                false,
            ),
            (
                "a service name may hold digits and '-'",
                dns1035_label,
                "web-0",
                true,
            ),
            (
                "a subdomain may hold dots",
                dns1123_subdomain,
                "web-abc.x",
                true,
            ),
            (
                "a subdomain may not hold empty parts",
                dns1123_subdomain,
                "a..b",
                false,
            ),
            (
                "a subdomain may be 253 bytes",
                dns1123_subdomain,
                &long_subdomain[..253],
                true,
            ),
            (
                "but not 254",
                dns1123_subdomain,
                &long_subdomain[..254],
                false,
            ),
            (
                "a subdomain may not hold a space",
                dns1123_subdomain,
                "a b",
                false,
            ),
        ];
        for (name, check, input, ok) in cases {
            assert_eq!(check(input).is_ok(), ok, "{name}: {:?}", check(input));
        }
    }

    #[test]
    fn long_names_are_shortened_for_messages() {
        let long = "x".repeat(1000);
        let short = shorten(&long);
        assert!(short.starts_with(&"x".repeat(80)), "{short}");
        assert!(short.ends_with("… (1000 bytes)"), "{short}");
        assert_eq!(shorten("web"), "web");
    }
}
