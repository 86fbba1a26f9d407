//! Codec names as Python spells them (`"bincode"`, `"json"`): the one
//! place they are written and parsed.

use knafeh::Codec;

/// Every codec with its Python name.
const NAMES: [(Codec, &str); 2] = [(Codec::Bincode, "bincode"), (Codec::Json, "json")];

/// The Python name of `codec`.
pub(crate) fn name(codec: Codec) -> &'static str {
    NAMES
        .iter()
        .find(|(c, _)| *c == codec)
        .map_or("bincode", |(_, n)| *n)
}

/// The codec called `name`, or a message listing the names there are.
pub(crate) fn from_name(name: &str) -> Result<Codec, String> {
    NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(c, _)| *c)
        .ok_or_else(|| format!("unknown codec {name:?}: expected \"bincode\" or \"json\""))
}
