//! Helpers shared by the fuzz targets: the text format of header blocks,
//! deterministic chunkings of a byte stream, and a realistic request type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Parses a header block written as text: one header per `\n`-separated
/// line, the name up to the first space and the value after it (a line
/// without a space is a name with an empty value). Empty lines are skipped;
/// a line starting with a space has an empty name.
pub fn parse_headers(text: &[u8]) -> Vec<(&[u8], &[u8])> {
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        })
        .collect()
}

/// Borrows a header block built as owned pairs.
pub fn view(block: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    block
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect()
}

/// Splits `data` into pieces whose sizes come from a small PRNG seeded by
/// `seed`: mostly 1 to 8 bytes, sometimes up to 64, sometimes empty (an
/// empty `push` must be harmless too). The pieces concatenate to `data`.
pub fn chunks(data: &[u8], seed: u64) -> Chunks<'_> {
    Chunks {
        rest: data,
        // xorshift must not start at 0.
        state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
    }
}

/// Iterator returned by [`chunks`].
pub struct Chunks<'a> {
    rest: &'a [u8],
    state: u64,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let r = self.state;
        let size = match r % 8 {
            0 => 0,
            1..=5 => 1 + (r >> 8) % 8,
            _ => 1 + (r >> 8) % 64,
        };
        let size = usize::try_from(size).unwrap_or(1).min(self.rest.len());
        let (now, later) = self.rest.split_at(size);
        self.rest = later;
        Some(now)
    }
}

/// A request type with the shapes real services use: nested structs, a
/// `Vec` of structs, strings, an optional field, a map, an enum with unit,
/// tuple and struct variants, bytes, and a recursive enum. No floats (NaN
/// would break the equality checks) and no nested options (JSON cannot
/// tell `Some(None)` from `None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Order number.
    pub id: u64,
    /// Who ordered.
    pub customer: Customer,
    /// What was ordered.
    pub lines: Vec<Line>,
    /// Free text.
    pub note: Option<String>,
    /// Labels and their weights.
    pub tags: BTreeMap<String, i32>,
    /// How it is paid.
    pub payment: Payment,
    /// Which lines a discount applies to.
    pub discount_filter: Option<Filter>,
    /// Opaque client data.
    pub blob: Vec<u8>,
}

/// A customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
    /// Priority customer.
    pub vip: bool,
}

/// One order line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Stock-keeping unit.
    pub sku: String,
    /// Quantity.
    pub qty: u32,
    /// Unit price in cents (negative for refunds).
    pub price_cents: i64,
    /// Extra attributes.
    pub attrs: Vec<(String, String)>,
}

/// A payment method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payment {
    /// A card: last four digits and a network letter.
    Card {
        /// Last four digits.
        last4: u16,
        /// Network initial.
        network: char,
    },
    /// Invoice number.
    Invoice(u32),
    /// Cash on delivery.
    Cash,
}

/// A recursive filter expression over order lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// Lines with this SKU.
    Sku(String),
    /// Lines not matched by the inner filter.
    Not(Box<Filter>),
    /// Lines matched by every inner filter.
    All(Vec<Filter>),
}
