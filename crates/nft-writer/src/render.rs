//! `nft -f` text for rulesets, statements and map elements. The output of
//! [`Ruleset`]'s `Display` is a complete script: applied with `nft -f` it
//! replaces nftopo's tables atomically, exactly as `nftopo apply` does.

use std::fmt::{self, Display, Formatter, Write as _};

use crate::model::*;

/// A prefix as `nft` prints it: a full-length prefix is just the address.
fn cidr_text(c: &Cidr) -> String {
    if c.is_host() {
        c.addr().to_string()
    } else {
        c.to_string()
    }
}

/// `ADDR:PORT`, with brackets around IPv6 addresses.
fn addr_port(ip: &std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Writes one statement as `nft` text for a table of `family`.
pub fn write_stmt(out: &mut String, family: Family, stmt: &Stmt) {
    let f = family.nft_name();
    let _ = match stmt {
        Stmt::DestVmap { map } => {
            write!(out, "{f} daddr . meta l4proto . th dport vmap @{map}")
        }
        Stmt::PortVmap { map } => write!(out, "meta l4proto . th dport vmap @{map}"),
        Stmt::DestInSet { set } => write!(out, "{f} daddr . meta l4proto . th dport @{set}"),
        Stmt::PortInSet { set } => write!(out, "meta l4proto . th dport @{set}"),
        Stmt::SaddrIn(c) => write!(out, "{f} saddr {}", cidr_text(c)),
        Stmt::SaddrNotIn(c) => write!(out, "{f} saddr != {}", cidr_text(c)),
        Stmt::IifnameIs(i) => write!(out, "iifname {i}"),
        Stmt::IifnameIsNot(i) => write!(out, "iifname != {i}"),
        Stmt::DaddrIn(c) => write!(out, "{f} daddr {}", cidr_text(c)),
        Stmt::DaddrNotIn(c) => write!(out, "{f} daddr != {}", cidr_text(c)),
        Stmt::FibDaddrLocal => write!(out, "fib daddr type local"),
        Stmt::FibSaddrLocal => write!(out, "fib saddr type local"),
        Stmt::AddrPairInSet { set } => write!(out, "{f} saddr . {f} daddr @{set}"),
        Stmt::SaddrInSet { set } => write!(out, "{f} saddr @{set}"),
        Stmt::DaddrInSet { set } => write!(out, "{f} daddr @{set}"),
        Stmt::CtStateNew => write!(out, "ct state new"),
        Stmt::NumgenIs { modulus, value } => write!(out, "numgen random mod {modulus} {value}"),
        Stmt::L4ProtoIs(p) => write!(out, "meta l4proto {}", p.nft_name()),
        Stmt::MarkBitsClear(bits) => {
            write!(out, "meta mark & 0x{bits:08x} == 0x00000000")
        }
        Stmt::MarkSetBits(bits) => write!(out, "meta mark set meta mark | 0x{bits:08x}"),
        Stmt::MarkToggleBits(bits) => write!(out, "meta mark set meta mark ^ 0x{bits:08x}"),
        Stmt::UpdateSaddr { set } => write!(out, "update @{set} {{ {f} saddr }}"),
        Stmt::Masquerade => write!(out, "masquerade fully-random"),
        Stmt::DnatSpread {
            modulus,
            offset,
            map,
        } => write!(
            out,
            "dnat {f} to {f} daddr . meta l4proto . th dport . numgen random mod {modulus}{} map @{map}",
            offset_text(*offset)
        ),
        Stmt::DnatSpreadPort {
            modulus,
            offset,
            map,
        } => write!(
            out,
            "dnat {f} to meta l4proto . th dport . numgen random mod {modulus}{} map @{map}",
            offset_text(*offset)
        ),
        Stmt::DnatTo(ip, port) => write!(out, "dnat {f} to {}", addr_port(ip, *port)),
        Stmt::Reject => write!(out, "reject"),
        Stmt::RejectTcpReset => write!(out, "reject with tcp reset"),
        Stmt::Verdict(v) => write!(out, "{v}"),
        // Not nft syntax: only read-back rules hold these, and nothing
        // prints those as a script.
        Stmt::Unknown { name, data } => write!(out, "unknown-expr {name} 0x{}", hex(data)),
    };
}

impl Display for Verdict {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// The rule as `nft` text (statements joined by spaces).
pub fn rule_text(family: Family, rule: &Rule) -> String {
    let mut out = String::new();
    for (i, stmt) in rule.0.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_stmt(&mut out, family, stmt);
    }
    out
}

/// ` offset O` of a `numgen` expression, as `nft` lists it (nothing for 0).
fn offset_text(offset: u32) -> String {
    if offset == 0 {
        String::new()
    } else {
        format!(" offset {offset}")
    }
}

/// The `type …`/`typeof …` line of a set or map.
pub fn map_type_text(family: Family, kind: MapKind) -> String {
    let f = family.nft_name();
    let addr = match family {
        Family::Ip => "ipv4_addr",
        Family::Ip6 => "ipv6_addr",
    };
    match kind {
        MapKind::ServiceVerdict => format!("type {addr} . inet_proto . inet_service : verdict"),
        MapKind::PortVerdict => "type inet_proto . inet_service : verdict".into(),
        MapKind::ServiceSet => format!("type {addr} . inet_proto . inet_service"),
        MapKind::PortSet => "type inet_proto . inet_service".into(),
        MapKind::EndpointDnat => format!(
            "typeof {f} daddr . meta l4proto . th dport . numgen random mod 1 : {f} daddr . th dport"
        ),
        MapKind::PortEndpointDnat => format!(
            "typeof meta l4proto . th dport . numgen random mod 1 : {f} daddr . th dport"
        ),
        MapKind::AddrPairSet => format!("type {addr} . {addr}"),
        MapKind::AddrSet => format!("type {addr}"),
        MapKind::AffinitySet { .. } => format!("type {addr}"),
        MapKind::Other {
            key_type,
            key_len,
            data_type,
            data_len,
            ..
        } => format!("type 0x{key_type:x}/{key_len} : 0x{data_type:x}/{data_len}"),
    }
}

/// Extra declaration lines of a set (`flags …`, `timeout …`).
pub fn map_extra_lines(kind: MapKind) -> Vec<String> {
    match kind {
        MapKind::AffinitySet { timeout } => {
            vec![
                "flags dynamic,timeout".into(),
                format!("timeout {timeout}s"),
            ]
        }
        _ => Vec::new(),
    }
}

/// One element as `nft` text, e.g. `10.43.0.10 . tcp . 80 : goto svc-…`.
pub fn element_text(key: &ElemKey, value: &ElemValue) -> String {
    let mut out = match key {
        ElemKey::Service {
            addr,
            proto,
            port,
            index,
        } => {
            let mut s = format!("{addr} . {} . {port}", proto.nft_name());
            if let Some(i) = index {
                let _ = write!(s, " . {i}");
            }
            s
        }
        ElemKey::Port { proto, port, index } => {
            let mut s = format!("{} . {port}", proto.nft_name());
            if let Some(i) = index {
                let _ = write!(s, " . {i}");
            }
            s
        }
        ElemKey::Pair(a, b) => format!("{a} . {b}"),
        ElemKey::Addr(a) => a.to_string(),
        ElemKey::Raw(b) => format!("0x{}", hex(b)),
    };
    let _ = match value {
        ElemValue::Verdict(v) => write!(out, " : {v}"),
        ElemValue::Dnat(ip, port) => write!(out, " : {ip} . {port}"),
        ElemValue::Member => Ok(()),
        ElemValue::Raw(d) => write!(out, " : {d}"),
    };
    out
}

/// Bytes as lowercase hex, for what the kernel holds that our model has
/// no words for.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `type nat hook prerouting priority -100; policy accept;` line.
pub fn base_chain_text(base: &BaseChain) -> String {
    format!(
        "type {} hook {} priority {}; policy {};",
        base.chain_type.nft_name(),
        base.hook.nft_name(),
        base.priority,
        if base.policy_drop { "drop" } else { "accept" }
    )
}

impl Display for Table {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {} {} {{", self.family.nft_name(), self.name)?;
        if let Some(layout) = self.layout {
            // What `nft list` shows of the user data the encoder writes.
            writeln!(f, "\tcomment \"{}\"", crate::udata::layout_comment(layout))?;
        }
        for map in self.maps.values() {
            let word = if map.kind.is_map() { "map" } else { "set" };
            writeln!(f, "\t{word} {} {{", map.name)?;
            writeln!(f, "\t\t{}", map_type_text(self.family, map.kind))?;
            for line in map_extra_lines(map.kind) {
                writeln!(f, "\t\t{line}")?;
            }
            if !map.elements.is_empty() {
                writeln!(f, "\t\telements = {{")?;
                let n = map.elements.len();
                for (i, (k, v)) in map.elements.iter().enumerate() {
                    let sep = if i + 1 < n { "," } else { "" };
                    writeln!(f, "\t\t\t{}{sep}", element_text(k, v))?;
                }
                writeln!(f, "\t\t}}")?;
            }
            writeln!(f, "\t}}")?;
        }
        for chain in self.chains.values() {
            writeln!(f, "\tchain {} {{", chain.name)?;
            if let Some(base) = &chain.base {
                writeln!(f, "\t\t{}", base_chain_text(base))?;
            }
            for rule in &chain.rules {
                writeln!(f, "\t\t{}", rule_text(self.family, rule))?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}

impl Display for Ruleset {
    /// A script that replaces nftopo's tables: `table …` (create if
    /// missing), `delete table …` for both families, then the full tables,
    /// all in the one transaction `nft -f` makes of a file.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for family in [Family::Ip, Family::Ip6] {
            let name = self
                .tables
                .iter()
                .find(|t| t.family == family)
                .map_or(crate::names::TABLE, |t| t.name.as_str());
            writeln!(f, "table {} {name}", family.nft_name())?;
            writeln!(f, "delete table {} {name}", family.nft_name())?;
        }
        for t in &self.tables {
            write!(f, "{t}")?;
        }
        Ok(())
    }
}
