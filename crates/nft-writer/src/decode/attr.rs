//! Netlink attributes and frames, read without copying: the building
//! blocks of the read-back decoder.

use super::*;

/// The attributes in `buf`: (type without flags, value). Stops at the
/// first malformed header.
pub(crate) fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs {
        rest: buf,
        broken: &[],
    }
}

/// Iterator of [`attrs`].
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
    broken: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// What followed the last well-formed attribute, once the iterator
    /// stopped early (empty when the list was well formed).
    pub fn broken(&self) -> &'a [u8] {
        self.broken
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let (len, kind) = match rest {
            [l0, l1, t0, t1, ..] => (
                usize::from(u16::from_ne_bytes([*l0, *l1])),
                u16::from_ne_bytes([*t0, *t1]) & NLA_TYPE_MASK,
            ),
            [] => return None,
            _ => {
                self.broken = rest;
                self.rest = &[];
                return None;
            }
        };
        if len < 4 || len > rest.len() {
            self.broken = rest;
            self.rest = &[];
            return None;
        }
        self.rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, &rest[4..len]))
    }
}

/// The value of the first attribute of type `kind` in `buf`.
pub(crate) fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(t, _)| *t == kind).map(|(_, v)| v)
}

/// A big-endian u32 attribute value.
pub(crate) fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

/// A big-endian u64 attribute value.
pub(crate) fn be64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// A NUL-terminated string attribute value (invalid UTF-8 replaced).
pub(crate) fn string(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// The NFTA_DATA_VALUE bytes in a data attribute's value.
pub(crate) fn data_value(data: &[u8]) -> Option<&[u8]> {
    find(data, DATA_VALUE)
}

/// The verdict in a data attribute's value (NFTA_DATA_VERDICT), if it is
/// one the model knows.
pub(crate) fn data_verdict(data: &[u8]) -> Option<Verdict> {
    let v = find(data, DATA_VERDICT)?;
    let code = be32(find(v, VERDICT_CODE)?)? as i32;
    let chain = find(v, VERDICT_CHAIN).map(string);
    // NF_DROP 0, NF_ACCEPT 1, NFT_JUMP -3, NFT_GOTO -4, NFT_RETURN -5.
    Some(match (code, chain) {
        (1, None) => Verdict::Accept,
        (0, None) => Verdict::Drop,
        (-5, None) => Verdict::Return,
        (-3, Some(c)) => Verdict::Jump(c),
        (-4, Some(c)) => Verdict::Goto(c),
        _ => return None,
    })
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    /// nlmsg_type.
    pub kind: u16,
    /// nlmsg_flags.
    pub flags: u16,
    /// nlmsg_seq.
    pub seq: u32,
    /// What follows the header.
    pub payload: &'a [u8],
}

/// The netlink messages of a datagram, in order; an error if a length
/// field does not fit.
pub(crate) fn frames(datagram: &[u8]) -> Result<Vec<Frame<'_>>, Error> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let header = rest.get(..NLMSG_HDRLEN).ok_or_else(|| {
            Error::Protocol(format!("{} stray bytes after a message", rest.len()))
        })?;
        let word = |at: usize| {
            u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let len = word(0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(Error::Protocol(format!(
                "netlink message length {len} with {} bytes left",
                rest.len()
            )));
        }
        out.push(Frame {
            kind: u16::from_ne_bytes([header[4], header[5]]),
            flags: u16::from_ne_bytes([header[6], header[7]]),
            seq: word(8),
            payload: &rest[NLMSG_HDRLEN..len],
        });
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
    }
    Ok(out)
}
