//! The names knafeh generates beside the user's method names. Validation
//! checks method names against this one table; the expansion tests check
//! that every name here is really generated, so the two cannot drift.

/// Which generated Rust type has a member.
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    Server,
    Client,
    Both,
}

/// A member of the generated `{Trait}Server`/`{Trait}Client`.
pub(crate) struct Member {
    pub(crate) name: &'static str,
    /// What it is, for error messages ("constructor", "method").
    pub(crate) what: &'static str,
    pub(crate) owner: Owner,
}

/// The generated Rust members a method name could clash with.
pub(crate) const RUST_MEMBERS: [Member; 4] = [
    Member {
        name: "new",
        what: "constructors",
        owner: Owner::Both,
    },
    Member {
        name: "client",
        what: "method",
        owner: Owner::Client,
    },
    Member {
        name: "schema",
        what: "associated function",
        owner: Owner::Client,
    },
    Member {
        name: "from_arc",
        what: "constructor",
        owner: Owner::Server,
    },
];

/// The client's constant holding the service name; each method also gets
/// a path constant named after it, upper-cased.
pub(crate) const SERVICE_NAME_CONST: &str = "SERVICE_NAME";

/// The suffix of each client method's call-options variant.
pub(crate) const WITH_SUFFIX: &str = "_with";

/// Members of the Python classes `#[pyservice]` generates.
pub(crate) const PYTHON_MEMBERS: [&str; 2] = ["connect", "implementation"];

/// The prefix of the Python classes' private members.
pub(crate) const PYTHON_PRIVATE_PREFIX: &str = "_knafeh";

impl Member {
    /// How an error message names this member of `server`/`client`.
    pub(crate) fn describe(&self, server: &str, client: &str) -> String {
        let n = self.name;
        match self.owner {
            Owner::Both => format!("{} `{server}::{n}` and `{client}::{n}`", self.what),
            Owner::Client => format!("{} `{client}::{n}`", self.what),
            Owner::Server => format!("{} `{server}::{n}`", self.what),
        }
    }
}
