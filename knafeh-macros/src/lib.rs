//! Procedural macros for [knafeh](https://docs.rs/knafeh). Use them through
//! the runtime crate: `#[knafeh::service]`.

mod expand;
mod names;
mod parse;
mod valid;

/// Turns a trait of `async fn` methods into a knafeh service: the trait
/// itself (made `Send + Sync + 'static`, with `Send` futures), a
/// `{Trait}Server<T>` that routes calls to an implementation, and a
/// `{Trait}Client` with one method per trait method.
///
/// Options: `package = "a.b"` (the service is then named `a.b.Trait`) and
/// `crate = "::path::to::knafeh"` (where the runtime is, when renamed).
/// See the knafeh crate's documentation for a full example.
#[proc_macro_attribute]
pub fn service(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand::service(attr.into(), item.into()).into()
}

/// `#[service]` plus Python classes: `{Trait}Client` (asyncio),
/// `{Trait}BlockingClient` and `{Trait}Service` (a Python implementation
/// to serve), as the Rust types `{Trait}PyClient`, `{Trait}PyBlockingClient`
/// and `{Trait}PyService` to add to your own `#[pymodule]`. Use it
/// through knafeh-py: `#[knafeh_py::pyservice]`; `crate = "..."` then
/// names the knafeh-py crate. `module = "a.b"` sets the classes'
/// `__module__` (default: the name of the crate being compiled, which is
/// the module a maturin extension exports).
#[proc_macro_attribute]
pub fn pyservice(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand::pyservice(attr.into(), item.into()).into()
}
