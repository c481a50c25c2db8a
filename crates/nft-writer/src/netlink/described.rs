//! [`Described`]: what a refusal names, for a batch whose operations were
//! dropped once encoded.

use crate::encode::ELEMENTS_PER_MESSAGE;
use crate::model::ElemValue;
use crate::render::element_text;
use crate::transaction::Op;

/// An operation sent by [`super::NetlinkKernel`]'s `apply_iter`, kept to
/// describe a refusal: whole, but for the elements of element operations
/// (dropped once encoded), of which each message's first and last are
/// kept.
pub(super) enum Described {
    Whole(Op),
    Elements {
        /// `add element ip nftopo MAP` or `delete element …`.
        head: String,
        /// Per message: its first and last element, and how many it holds.
        messages: Vec<(String, String, usize)>,
        total: usize,
    },
}

impl Described {
    pub(super) fn of(op: Op) -> Self {
        match op {
            Op::AddElements {
                table,
                map,
                elements,
                ..
            } => Described::Elements {
                head: format!("add element {table} {map}"),
                messages: per_message(&elements, |(k, v)| element_text(k, v)),
                total: elements.len(),
            },
            Op::DeleteElements { table, map, keys } => Described::Elements {
                head: format!("delete element {table} {map}"),
                messages: per_message(&keys, |k| element_text(k, &ElemValue::Member)),
                total: keys.len(),
            },
            op => Described::Whole(op),
        }
    }

    /// The operation as `nft` would show it; for elements, the refused
    /// message's (`nth` of the operation's).
    pub(super) fn text(&self, nth: usize) -> String {
        match self {
            Described::Whole(op) => op.to_string(),
            Described::Elements {
                head,
                messages,
                total,
            } => match messages.get(nth) {
                Some((first, _, 1)) => format!("{head} {{ {first} }}"),
                Some((first, last, n)) => format!(
                    "{head} {{ {first}, …, {last} }} ({n} elements, message {} of the \
                     operation's {}, {total} elements in all)",
                    nth + 1,
                    messages.len()
                ),
                None => format!("{head} ({total} elements)"),
            },
        }
    }
}

/// Per message the encoder makes of `items` ([`ELEMENTS_PER_MESSAGE`]
/// each): its first and last item as `text` shows them, and how many it
/// holds.
fn per_message<T>(items: &[T], text: impl Fn(&T) -> String) -> Vec<(String, String, usize)> {
    items
        .chunks(ELEMENTS_PER_MESSAGE)
        .map(|c| (text(&c[0]), text(&c[c.len() - 1]), c.len()))
        .collect()
}
