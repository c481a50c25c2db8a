//! Input interface names as rules match them (`iifname "cbr0"`,
//! `iifname "cali*"`): kube-proxy's `--pod-bridge-interface` and
//! `--pod-interface-name-prefix`.

use std::fmt;

/// IFNAMSIZ: an interface name and its terminating NUL fit in 16 bytes.
pub const IFNAMSIZ: usize = 16;

/// A match on the packet's input interface name: one whole name, or every
/// name that starts with a prefix (`nft`'s `"cali*"`).
///
/// In the kernel, `meta iifname` loads the name padded with NULs to
/// [`IFNAMSIZ`] bytes; a whole name compares all 16 bytes, a prefix only
/// its own bytes ([`IfacePattern::cmp_bytes`]), as `nft` encodes them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfacePattern {
    name: String,
    prefix: bool,
}

impl IfacePattern {
    /// One whole interface name (`iifname "cbr0"`). Errors say what is
    /// wrong with `name`.
    pub fn exact(name: &str) -> Result<Self, String> {
        check(name)?;
        Ok(Self {
            name: name.to_string(),
            prefix: false,
        })
    }

    /// Every interface whose name starts with `prefix` (`iifname
    /// "cali*"`).
    pub fn prefix(prefix: &str) -> Result<Self, String> {
        check(prefix)?;
        Ok(Self {
            name: prefix.to_string(),
            prefix: true,
        })
    }

    /// The name, or the prefix without its `*`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a prefix match.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Whether an interface named `ifname` matches ("" for no input
    /// interface: a packet the node itself sends).
    pub fn matches(&self, ifname: &str) -> bool {
        if self.prefix {
            ifname.starts_with(&self.name)
        } else {
            ifname == self.name
        }
    }

    /// The bytes `cmp` compares with the loaded name: the prefix's bytes,
    /// or the whole name padded with NULs to [`IFNAMSIZ`].
    pub fn cmp_bytes(&self) -> Vec<u8> {
        let mut b = self.name.as_bytes().to_vec();
        if !self.prefix {
            b.resize(IFNAMSIZ, 0);
        }
        b
    }

    /// The pattern `cmp_bytes` came from: fewer than [`IFNAMSIZ`] bytes
    /// are a prefix, [`IFNAMSIZ`] bytes a NUL-padded whole name. `None`
    /// for anything `nft` would not have sent for a valid name.
    pub fn from_cmp_bytes(b: &[u8]) -> Option<Self> {
        let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
        if b.len() == IFNAMSIZ {
            let end = b.iter().position(|c| *c == 0)?;
            if b[end..].iter().any(|c| *c != 0) {
                return None;
            }
            Self::exact(&text(&b[..end])?).ok()
        } else {
            Self::prefix(&text(b)?).ok()
        }
    }
}

/// As `nft` prints it, quoted: `"cbr0"`, `"cali*"`.
impl fmt::Display for IfacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.prefix { "*" } else { "" };
        write!(f, "\"{}{star}\"", self.name)
    }
}

/// A name the kernel accepts (`dev_valid_name`: 1 to 15 bytes, no `/`,
/// `:` or white space, not `.` or `..`) and that prints unambiguously in
/// `nft` text (no `*`, `"`, `\` or control characters).
fn check(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() >= IFNAMSIZ {
        return Err(format!(
            "{name:?} is {} bytes; interface names have at most {}",
            name.len(),
            IFNAMSIZ - 1
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not an interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | ':' | '*' | '"' | '\\') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?} holds {c:?}, which an interface name cannot hold here"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_name_compares_sixteen_nul_padded_bytes_a_prefix_only_its_own() {
        let exact = IfacePattern::exact("cbr0").unwrap();
        assert_eq!(exact.cmp_bytes(), b"cbr0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec());
        assert_eq!(exact.to_string(), "\"cbr0\"");
        let prefix = IfacePattern::prefix("cali").unwrap();
        assert_eq!(prefix.cmp_bytes(), b"cali".to_vec());
        assert_eq!(prefix.to_string(), "\"cali*\"");
        for p in [exact, prefix] {
            assert_eq!(IfacePattern::from_cmp_bytes(&p.cmp_bytes()), Some(p));
        }
    }

    #[test]
    fn a_prefix_matches_every_name_it_starts_and_a_name_only_itself() {
        let prefix = IfacePattern::prefix("cali").unwrap();
        assert!(prefix.matches("cali12ab"));
        assert!(prefix.matches("cali"));
        assert!(!prefix.matches("eth0"));
        assert!(!prefix.matches(""));
        let exact = IfacePattern::exact("cbr0").unwrap();
        assert!(exact.matches("cbr0"));
        assert!(!exact.matches("cbr01"));
    }

    #[test]
    fn names_the_kernel_or_nft_text_cannot_hold_are_refused() {
        for bad in [
            "",
            "a-name-of-16-byt",
            ".",
            "..",
            "eth/0",
            "eth 0",
            "ca*",
            "a:b",
            "a\"b",
        ] {
            assert!(IfacePattern::exact(bad).is_err(), "{bad:?}");
            assert!(IfacePattern::prefix(bad).is_err(), "{bad:?}");
        }
        assert!(IfacePattern::exact("a-name-of-15-by").is_ok());
    }

    #[test]
    fn bytes_nft_would_not_send_for_a_valid_name_decode_to_nothing() {
        // Sixteen bytes without a NUL, bytes after the NUL, an empty name.
        assert_eq!(IfacePattern::from_cmp_bytes(b"abcdefghijklmnop"), None);
        assert_eq!(
            IfacePattern::from_cmp_bytes(b"cbr0\0\0\0\0\0\0\0\0\0\0\0x"),
            None
        );
        assert_eq!(IfacePattern::from_cmp_bytes(&[0; 16]), None);
        assert_eq!(IfacePattern::from_cmp_bytes(b""), None);
    }
}
