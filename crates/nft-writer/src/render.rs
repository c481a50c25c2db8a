//! `nft -f` text for rulesets, statements and map elements. The output of
//! [`Ruleset`]'s `Display` is a complete script: applied with `nft -f` it
//! replaces nftopo's tables atomically, exactly as `nftopo apply` does.

use std::fmt::{self, Display, Formatter, Write as _};

use crate::model::*;

/// Writes one statement as `nft` text for a table of `family`.
pub fn write_stmt(out: &mut String, family: Family, stmt: &Stmt) {
    let f = family.nft_name();
    let _ = match stmt {
        Stmt::DestVmap { map } => {
            write!(out, "{f} daddr . meta l4proto . th dport vmap @{map}")
        }
        Stmt::SaddrNotIn(cidr) => write!(out, "{f} saddr != {cidr}"),
        Stmt::MarkBitsClear(bits) => {
            write!(out, "meta mark & 0x{bits:08x} == 0x00000000")
        }
        Stmt::MarkSetBits(bits) => write!(out, "meta mark set meta mark | 0x{bits:08x}"),
        Stmt::MarkToggleBits(bits) => write!(out, "meta mark set meta mark ^ 0x{bits:08x}"),
        Stmt::Masquerade => write!(out, "masquerade fully-random"),
        Stmt::DnatSpread { modulus, map } => write!(
            out,
            "dnat {f} to {f} daddr . meta l4proto . th dport . numgen random mod {modulus} map @{map}"
        ),
        Stmt::L4ProtoIs(p) => write!(out, "meta l4proto {}", p.nft_name()),
        Stmt::Reject => write!(out, "reject"),
        Stmt::RejectTcpReset => write!(out, "reject with tcp reset"),
        Stmt::Verdict(v) => write!(out, "{v}"),
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

/// The `type …`/`typeof …` line of a map.
pub fn map_type_text(family: Family, kind: MapKind) -> String {
    let f = family.nft_name();
    match (kind, family) {
        (MapKind::ServiceVerdict, Family::Ip) => {
            "type ipv4_addr . inet_proto . inet_service : verdict".into()
        }
        (MapKind::ServiceVerdict, Family::Ip6) => {
            "type ipv6_addr . inet_proto . inet_service : verdict".into()
        }
        (MapKind::EndpointDnat, _) => format!(
            "typeof {f} daddr . meta l4proto . th dport . numgen random mod 1 : {f} daddr . th dport"
        ),
    }
}

/// One element as `nft` text, e.g. `10.43.0.10 . tcp . 80 : goto svc-…`.
pub fn element_text(key: &ElemKey, value: &ElemValue) -> String {
    let mut out = format!("{} . {} . {}", key.addr, key.proto.nft_name(), key.port);
    if let Some(i) = key.index {
        let _ = write!(out, " . {i}");
    }
    let _ = match value {
        ElemValue::Verdict(v) => write!(out, " : {v}"),
        ElemValue::Dnat(ip, port) => write!(out, " : {ip} . {port}"),
    };
    out
}

/// The `type nat hook prerouting priority -100; policy accept;` line.
pub fn base_chain_text(base: &BaseChain) -> String {
    let t = match base.chain_type {
        ChainType::Nat => "nat",
        ChainType::Filter => "filter",
    };
    format!(
        "type {t} hook {} priority {}; policy accept;",
        base.hook.nft_name(),
        base.priority
    )
}

impl Display for Table {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {} {} {{", self.family.nft_name(), self.name)?;
        for map in self.maps.values() {
            writeln!(f, "\tmap {} {{", map.name)?;
            writeln!(f, "\t\t{}", map_type_text(self.family, map.kind))?;
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
    /// missing), `delete table …`, then the full table, all in the one
    /// transaction `nft -f` makes of a file.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for t in &self.tables {
            writeln!(f, "table {} {}", t.family.nft_name(), t.name)?;
            writeln!(f, "delete table {} {}", t.family.nft_name(), t.name)?;
        }
        for t in &self.tables {
            write!(f, "{t}")?;
        }
        Ok(())
    }
}
