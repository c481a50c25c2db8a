//! A transaction is data before it is bytes: an ordered list of [`Op`]s.
//! `Display` prints it as `nft` commands; the netlink encoder and the fake
//! kernel consume the same value.

use std::fmt::{self, Display, Formatter};

use crate::model::*;
use crate::render::{base_chain_text, element_text, map_extra_lines, map_type_text, rule_text};

/// Where an object lives: family and table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    /// Family.
    pub family: Family,
    /// Table name.
    pub name: String,
}

impl Display for TableRef {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family.nft_name(), self.name)
    }
}

/// One operation of a transaction. Each says the `nft` command it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `add table T` (creates it if missing; no error if it exists).
    AddTable(TableRef),
    /// `delete table T`.
    DeleteTable(TableRef),
    /// `add chain T C [{ type … hook … priority …; policy accept; }]`.
    AddChain {
        /// Table.
        table: TableRef,
        /// Chain name.
        name: String,
        /// Hook for base chains.
        base: Option<BaseChain>,
    },
    /// `add rule T C …` (appended).
    AddRule {
        /// Table.
        table: TableRef,
        /// Chain name.
        chain: String,
        /// The rule.
        rule: Rule,
    },
    /// `add map T M { type …; }`.
    AddMap {
        /// Table.
        table: TableRef,
        /// Map name.
        name: String,
        /// Shape of the map.
        kind: MapKind,
    },
    /// `flush chain T C` (removes its rules).
    FlushChain {
        /// Table.
        table: TableRef,
        /// Chain name.
        name: String,
    },
    /// `delete chain T C` (it must be empty and unreferenced).
    DeleteChain {
        /// Table.
        table: TableRef,
        /// Chain name.
        name: String,
    },
    /// `delete map T M` / `delete set T M` (it must be unreferenced).
    DeleteMap {
        /// Table.
        table: TableRef,
        /// Map name.
        name: String,
        /// Shape (`map` or `set` in the text).
        kind: MapKind,
    },
    /// `delete element T M { … }`.
    DeleteElements {
        /// Table.
        table: TableRef,
        /// Map name.
        map: String,
        /// Keys of the elements.
        keys: Vec<ElemKey>,
    },
    /// `add element T M { … }`.
    AddElements {
        /// Table.
        table: TableRef,
        /// Map name.
        map: String,
        /// Shape of the map (decides the encoding).
        kind: MapKind,
        /// Elements.
        elements: Vec<(ElemKey, ElemValue)>,
    },
}

/// Ordered operations, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// Operations in the order the kernel will see them.
    pub ops: Vec<Op>,
}

impl Transaction {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Replaces nftopo's tables with `ruleset` in one transaction: for each
    /// family, `add table` (so that the delete cannot fail), `delete
    /// table`, then what creates the new contents ([`crate::converge`]
    /// from nothing, in [`crate::Batch`]'s order). Traffic sees the old
    /// rules until the commit and the new ones after it, but the state
    /// in the old sets (session affinity) is lost: nftopo itself only
    /// converges ([`crate::Syncer`]); this is for tests and benchmarks
    /// that need a clean start.
    pub fn replace(ruleset: &Ruleset) -> Self {
        let mut ops = Vec::new();
        for family in [Family::Ip, Family::Ip6] {
            let t = TableRef {
                family,
                name: crate::names::TABLE.into(),
            };
            ops.push(Op::AddTable(t.clone()));
            ops.push(Op::DeleteTable(t));
        }
        ops.extend(
            crate::engine::converge(&Ruleset::default(), ruleset)
                .now
                .ops,
        );
        Self { ops }
    }

    /// Removes the given tables if they exist (`add table` then `delete
    /// table`, so a missing table is not an error).
    pub fn delete_tables(tables: &[TableRef]) -> Self {
        let mut ops = Vec::new();
        for t in tables {
            ops.push(Op::AddTable(t.clone()));
            ops.push(Op::DeleteTable(t.clone()));
        }
        Self { ops }
    }
}

impl Display for Op {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddTable(t) => write!(f, "add table {t}"),
            Op::DeleteTable(t) => write!(f, "delete table {t}"),
            Op::AddChain { table, name, base } => {
                write!(f, "add chain {table} {name}")?;
                if let Some(b) = base {
                    write!(f, " {{ {} }}", base_chain_text(b))?;
                }
                Ok(())
            }
            Op::AddRule { table, chain, rule } => {
                write!(
                    f,
                    "add rule {table} {chain} {}",
                    rule_text(table.family, rule)
                )
            }
            Op::AddMap { table, name, kind } => {
                let word = if kind.is_map() { "map" } else { "set" };
                write!(
                    f,
                    "add {word} {table} {name} {{ {};",
                    map_type_text(table.family, *kind)
                )?;
                for line in map_extra_lines(*kind) {
                    write!(f, " {line};")?;
                }
                f.write_str(" }")
            }
            Op::FlushChain { table, name } => write!(f, "flush chain {table} {name}"),
            Op::DeleteChain { table, name } => write!(f, "delete chain {table} {name}"),
            Op::DeleteMap { table, name, kind } => {
                let word = if kind.is_map() { "map" } else { "set" };
                write!(f, "delete {word} {table} {name}")
            }
            Op::DeleteElements { table, map, keys } => {
                write!(f, "delete element {table} {map} {{ ")?;
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&element_text(k, &ElemValue::Member))?;
                }
                f.write_str(" }")
            }
            Op::AddElements {
                table,
                map,
                elements,
                ..
            } => {
                write!(f, "add element {table} {map} {{ ")?;
                for (i, (k, v)) in elements.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&element_text(k, v))?;
                }
                f.write_str(" }")
            }
        }
    }
}

impl Display for Transaction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}
