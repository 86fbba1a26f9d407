//! Generation: one function per generated item.
//!
//! Generated code names only `::core`, `::std` and `K::...`, where `K` is
//! the knafeh crate (`::knafeh`, or the `crate = "..."` option); the
//! runtime's parts that only generated code needs are under
//! `K::__private`, outside semver. A hygiene test with
//! `#![no_implicit_prelude]` and a renamed crate keeps this honest.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Error, FnArg, Ident, Item, ItemTrait, Pat, Path, ReturnType, TraitItem, Type};

use crate::parse::{self, RawOptions};
use crate::valid::{self, Config, Errors, Kind, Rpc, Service};

/// The whole macro: parse, validate, expand. On any error, the errors and
/// the user's item unchanged, so the trait still exists for the rest of
/// the crate and follow-on errors don't pile up.
pub(crate) fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Flavor::Rust)
}

/// `#[pyservice]`: everything `#[service]` generates, plus the Python
/// classes (`crate` then names knafeh-py, whose `knafeh` re-export is the
/// runtime).
pub(crate) fn pyservice(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Flavor::Python)
}

/// Which macro is expanding.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Rust,
    Python,
}

fn expand(attr: TokenStream, item: TokenStream, flavor: Flavor) -> TokenStream {
    let mut errors = Errors::default();
    let default_krate: Path = match flavor {
        Flavor::Rust => syn::parse_quote!(::knafeh),
        Flavor::Python => syn::parse_quote!(::knafeh_py),
    };
    let config = valid::config(
        syn::parse2::<RawOptions>(attr),
        default_krate,
        flavor == Flavor::Python,
        &mut errors,
    );
    let parsed = match syn::parse2::<Item>(item.clone()) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(e);
            return fallback(errors, item);
        }
    };
    let Item::Trait(tr) = &parsed else {
        errors.push(Error::new_spanned(
            &parsed,
            "#[service] applies to a trait: `pub trait MyService { async fn ... }`",
        ));
        return fallback(errors, item);
    };
    let model = parse::Trait::new(tr);
    let svc = valid::service(&model, &mut errors);
    if flavor == Flavor::Python {
        python_names(&svc, &mut errors);
    }
    if errors.has_errors() {
        return fallback(errors, quiet_trait(tr).into_token_stream());
    }
    match flavor {
        Flavor::Rust => Gen::new(&config, &svc).expand(),
        Flavor::Python => {
            let py = config.krate.clone();
            // The classes' `__module__`: as given, else the crate being
            // compiled (a maturin extension's library is named after its
            // module), so they never claim to be `builtins`.
            let module = config
                .module
                .clone()
                .or_else(|| std::env::var("CARGO_CRATE_NAME").ok());
            let config = Config {
                krate: syn::parse_quote!(#py::knafeh),
                package: config.package.clone(),
                module: None,
            };
            let gen = Gen::new(&config, &svc);
            let rust = gen.expand();
            let python = gen.python_items(&py, module.as_deref());
            quote!(#rust #python)
        }
    }
}

/// Names the generated Python classes use themselves.
const PYTHON_RESERVED: [&str; 2] = ["connect", "implementation"];

/// Method names that would clash with the Python classes' own members.
fn python_names(svc: &Service<'_>, errors: &mut Errors) {
    for rpc in &svc.rpcs {
        let name = rpc.name.to_string();
        if PYTHON_RESERVED.contains(&name.as_str()) || name.starts_with("_knafeh") {
            errors.push(Error::new(
                rpc.name.span(),
                format!(
                    "`{name}` clashes with a member of the Python classes #[pyservice] generates; rename the method"
                ),
            ));
        }
    }
}

fn fallback(errors: Errors, item: TokenStream) -> TokenStream {
    let errors = errors.finish().err().map(|e| e.to_compile_error());
    quote!(#errors #item)
}

/// The user's trait with what rustc would reject on its own taken out
/// (patterns and `mut` in arguments, `const fn`, a second method of the
/// same name), so a rejected trait gives our error and not rustc's too.
/// Everything else is left as written.
fn quiet_trait(item: &ItemTrait) -> ItemTrait {
    let mut item = item.clone();
    let mut seen = Vec::new();
    item.items.retain_mut(|it| {
        let TraitItem::Fn(f) = it else { return true };
        if seen.contains(&f.sig.ident) {
            return false;
        }
        seen.push(f.sig.ident.clone());
        f.sig.constness = None;
        // rustc would also complain about `Streaming`'s argument count.
        if let ReturnType::Type(_, ty) = &f.sig.output {
            if parse::result_parts(ty)
                .is_some_and(|(ok, _)| matches!(valid::streaming(ok), valid::Streaming::Malformed))
            {
                f.sig.output = ReturnType::Default;
            }
        }
        for arg in &mut f.sig.inputs {
            match arg {
                FnArg::Receiver(r) if r.reference.is_none() => r.mutability = None,
                FnArg::Receiver(_) => {}
                FnArg::Typed(t) => match &mut *t.pat {
                    Pat::Ident(p) => {
                        p.mutability = None;
                        p.by_ref = None;
                        p.subpat = None;
                    }
                    Pat::Wild(_) => {}
                    other => {
                        *other = Pat::Wild(syn::PatWild {
                            attrs: Vec::new(),
                            underscore_token: Default::default(),
                        })
                    }
                },
            }
        }
        true
    });
    item
}

/// Holds what every generated item needs.
struct Gen<'a> {
    svc: &'a Service<'a>,
    krate: &'a Path,
    trait_ident: &'a Ident,
    server: Ident,
    client: Ident,
    /// `package.Trait`, or `Trait`.
    full_name: String,
}

impl<'a> Gen<'a> {
    fn new(config: &'a Config, svc: &'a Service<'a>) -> Self {
        let trait_ident = &svc.item.ident;
        let full_name = match &config.package {
            Some(p) => format!("{p}.{trait_ident}"),
            None => trait_ident.to_string(),
        };
        Gen {
            svc,
            krate: &config.krate,
            trait_ident,
            server: format_ident!("{}Server", trait_ident),
            client: format_ident!("{}Client", trait_ident),
            full_name,
        }
    }

    fn expand(&self) -> TokenStream {
        let items = [
            self.trait_item(),
            self.server_struct(),
            self.server_constructors(),
            self.server_clone(),
            self.service_impl(),
            self.client_struct(),
            self.client_impl(),
            self.message_checks(),
        ];
        quote!(#(#items)*)
    }

    /// `where` predicates that every message type of `rpcs` is a
    /// `Message`. The unused `for<'__knafeh>` keeps rustc from checking
    /// them where they are declared: a non-serde type is then reported
    /// once, by `message_checks`, and not again by every generated body
    /// that uses it.
    fn message_bounds<'r>(&self, rpcs: impl IntoIterator<Item = &'r Rpc<'r>>) -> TokenStream
    where
        'a: 'r,
    {
        let krate = self.krate;
        let bounds = rpcs.into_iter().flat_map(message_types).map(|ty| {
            quote_spanned! {ty.span()=>
                for<'__knafeh> #ty: #krate::__private::Message,
            }
        });
        quote!(#(#bounds)*)
    }

    /// The Python classes of `#[pyservice]`: `{Trait}Client` (async) and
    /// `{Trait}BlockingClient`, as Rust types `{Trait}PyClient` and
    /// `{Trait}PyBlockingClient` for the user's `#[pymodule]`.
    fn python_items(&self, py: &Path, module: Option<&str>) -> TokenStream {
        let module = module.map(|m| quote!(module = #m,));
        let trait_ident = self.trait_ident;
        let client = &self.client;
        let vis = &self.svc.item.vis;
        let pyo3_path = format!("{}::__private::pyo3", quote!(#py)).replace(' ', "");
        let p = quote!(#py::__private);
        let o = quote!(#py::__private::pyo3);
        let mut out = TokenStream::new();
        for blocking in [false, true] {
            let (rust_name, py_name, what) = if blocking {
                (
                    format_ident!("{}PyBlockingClient", trait_ident),
                    format!("{trait_ident}BlockingClient"),
                    "blocking",
                )
            } else {
                (
                    format_ident!("{}PyClient", trait_ident),
                    format!("{trait_ident}Client"),
                    "asyncio",
                )
            };
            let class_doc = format!(
                "Python ({what}) client of the `{}` service; add it to your `#[pymodule]` with `m.add_class::<{rust_name}>()`.",
                self.full_name
            );
            let connect = if blocking {
                quote! {
                    /// Connects (blocking). The server certificate is verified against `ca`
                    /// (a PEM file) unless `insecure=True`.
                    #[staticmethod]
                    #[pyo3(signature = (addr, *, ca = None, server_name = None, insecure = false, codec = None, timeout = None, connect_timeout = None))]
                    #[allow(clippy::too_many_arguments)]
                    fn connect(
                        py: #o::Python<'_>,
                        addr: ::std::string::String,
                        ca: ::core::option::Option<::std::string::String>,
                        server_name: ::core::option::Option<::std::string::String>,
                        insecure: bool,
                        codec: ::core::option::Option<::std::string::String>,
                        timeout: ::core::option::Option<f64>,
                        connect_timeout: ::core::option::Option<f64>,
                    ) -> #o::PyResult<Self> {
                        let opts = #p::ConnectOptions { addr, ca, server_name, insecure, codec, timeout, connect_timeout };
                        #p::connect_blocking(py, opts).map(|inner| Self { inner })
                    }
                }
            } else {
                quote! {
                    /// `await Client.connect(addr, ca=...)`. The server certificate is
                    /// verified against `ca` (a PEM file) unless `insecure=True`.
                    #[staticmethod]
                    #[pyo3(signature = (addr, *, ca = None, server_name = None, insecure = false, codec = None, timeout = None, connect_timeout = None))]
                    #[allow(clippy::too_many_arguments)]
                    fn connect<'py>(
                        py: #o::Python<'py>,
                        addr: ::std::string::String,
                        ca: ::core::option::Option<::std::string::String>,
                        server_name: ::core::option::Option<::std::string::String>,
                        insecure: bool,
                        codec: ::core::option::Option<::std::string::String>,
                        timeout: ::core::option::Option<f64>,
                        connect_timeout: ::core::option::Option<f64>,
                    ) -> #o::PyResult<#o::Bound<'py, #o::PyAny>> {
                        let opts = #p::ConnectOptions { addr, ca, server_name, insecure, codec, timeout, connect_timeout };
                        #p::connect_async(py, opts, |inner| Self { inner })
                    }
                }
            };
            let methods = self.svc.rpcs.iter().map(|rpc| {
                let name = rpc.name;
                let req = rpc.request;
                let path = self.path_const(rpc);
                let docs: TokenStream = rpc.docs.iter().map(|a| a.to_token_stream()).collect();
                // Unary: `unary_async`/`unary_blocking`; streams: one
                // `stream` helper, wrapped in the iterator type.
                let (call, ret, wrap) = match (&rpc.kind, blocking) {
                    (Kind::Unary { response }, false) => {
                        (quote!(#p::unary_async::<#req, #response>), quote!(#o::Bound<'py, #o::PyAny>), None)
                    }
                    (Kind::Unary { response }, true) => {
                        (quote!(#p::unary_blocking::<#req, #response>), quote!(#o::Py<#o::PyAny>), None)
                    }
                    (Kind::ServerStreaming { item }, false) => {
                        (quote!(#p::stream::<#req, #item>), quote!(#p::AsyncStream), Some(quote!(#p::AsyncStream)))
                    }
                    (Kind::ServerStreaming { item }, true) => (
                        quote!(#p::stream::<#req, #item>),
                        quote!(#p::BlockingStream),
                        Some(quote!(#p::BlockingStream)),
                    ),
                };
                let body = quote!(#call(py, &self.inner, #client::#path, request, fields, timeout, metadata));
                let body = match wrap {
                    None => body,
                    Some(wrap) => quote!(#body.map(<#wrap as ::core::convert::From<#p::StreamItems>>::from)),
                };
                quote! {
                    #docs
                    #[pyo3(signature = (request = None, /, *, timeout = None, metadata = None, **fields))]
                    fn #name<'py>(
                        &self,
                        py: #o::Python<'py>,
                        request: ::core::option::Option<&#o::Bound<'py, #o::PyAny>>,
                        timeout: ::core::option::Option<f64>,
                        metadata: ::core::option::Option<&#o::Bound<'py, #o::PyAny>>,
                        fields: ::core::option::Option<&#o::Bound<'py, #o::types::PyDict>>,
                    ) -> #o::PyResult<#ret> {
                        #body
                    }
                }
            });
            out.extend(quote! {
                #[doc = #class_doc]
                #[#o::pyclass(#module name = #py_name, frozen)]
                #[pyo3(crate = #pyo3_path)]
                #vis struct #rust_name {
                    inner: #p::PyClient,
                }

                #[#o::pymethods]
                #[pyo3(crate = #pyo3_path)]
                impl #rust_name {
                    #connect
                    #(#methods)*
                }
            });
        }
        out.extend(self.python_service(py, &pyo3_path, module));
        out
    }

    /// `{Trait}Service(implementation)`: wraps a Python implementation so
    /// `knafeh.Server` (or a Rust server, through `knafeh_py::PyService`)
    /// can serve it; converts payloads with the Rust types.
    fn python_service(
        &self,
        py: &Path,
        pyo3_path: &str,
        module: Option<TokenStream>,
    ) -> TokenStream {
        let trait_ident = self.trait_ident;
        let client = &self.client;
        let vis = &self.svc.item.vis;
        let p = quote!(#py::__private);
        let o = quote!(#py::__private::pyo3);
        let rust_name = format_ident!("{}PyService", trait_ident);
        let py_name = format!("{trait_ident}Service");
        let class_doc = format!(
            "Serves a Python implementation of `{}`: `{py_name}(impl)`, where `impl` has one method per service method (`def` or `async def`; generators or async generators for streams). Add it to a `knafeh.Server`.",
            self.full_name
        );
        let names: Vec<String> = self.svc.rpcs.iter().map(|r| r.name.to_string()).collect();
        let streaming: Vec<bool> = self
            .svc
            .rpcs
            .iter()
            .map(|r| matches!(r.kind, Kind::ServerStreaming { .. }))
            .collect();
        let decode_arms = self.svc.rpcs.iter().map(|rpc| {
            let name = rpc.name.to_string();
            let req = rpc.request;
            let path = self.path_const(rpc);
            quote!(#name => #p::decode_to_py::<#req>(py, #client::#path, codec, payload),)
        });
        let encode_arms = self.svc.rpcs.iter().map(|rpc| {
            let name = rpc.name.to_string();
            let path = self.path_const(rpc);
            let resp = match &rpc.kind {
                Kind::Unary { response } => *response,
                Kind::ServerStreaming { item } => *item,
            };
            quote!(#name => #p::encode_from_py::<#resp>(py, #client::#path, codec, value),)
        });
        quote! {
            #[doc = #class_doc]
            #[#o::pyclass(#module name = #py_name, frozen)]
            #[pyo3(crate = #pyo3_path)]
            #vis struct #rust_name {
                implementation: #o::Py<#o::PyAny>,
            }

            #[#o::pymethods]
            #[pyo3(crate = #pyo3_path)]
            impl #rust_name {
                #[new]
                fn new(implementation: #o::Py<#o::PyAny>) -> Self {
                    Self { implementation }
                }

                /// The wrapped implementation.
                #[getter]
                fn implementation(&self, py: #o::Python<'_>) -> #o::Py<#o::PyAny> {
                    self.implementation.clone_ref(py)
                }

                #[getter]
                fn _knafeh_name(&self) -> &'static str {
                    #client::SERVICE_NAME
                }

                #[getter]
                fn _knafeh_methods(&self) -> ::std::vec::Vec<(&'static str, bool)> {
                    ::std::vec![#((#names, #streaming)),*]
                }

                fn _knafeh_decode(
                    &self,
                    py: #o::Python<'_>,
                    method: &str,
                    codec: &str,
                    payload: &[u8],
                ) -> #o::PyResult<#o::Py<#o::PyAny>> {
                    match method {
                        #(#decode_arms)*
                        _ => ::core::result::Result::Err(#o::exceptions::PyValueError::new_err(method.to_owned())),
                    }
                }

                fn _knafeh_encode(
                    &self,
                    py: #o::Python<'_>,
                    method: &str,
                    codec: &str,
                    value: &#o::Bound<'_, #o::PyAny>,
                ) -> #o::PyResult<#o::Py<#o::types::PyBytes>> {
                    match method {
                        #(#encode_arms)*
                        _ => ::core::result::Result::Err(#o::exceptions::PyValueError::new_err(method.to_owned())),
                    }
                }
            }
        }
    }

    fn path(&self, rpc: &Rpc<'_>) -> String {
        format!("/{}/{}", self.full_name, rpc.wire_name)
    }

    fn path_const(&self, rpc: &Rpc<'_>) -> Ident {
        Ident::new(&rpc.wire_name.to_uppercase(), rpc.name.span())
    }

    /// The user's trait, made object-friendly for a multi-threaded server:
    /// `Send + Sync + 'static`, and every `async fn` turned into a `fn`
    /// returning a `Send` future (implementors still write `async fn`).
    fn trait_item(&self) -> TokenStream {
        let mut item: ItemTrait = self.svc.item.clone();
        item.colon_token.get_or_insert_with(Default::default);
        item.supertraits
            .push(syn::parse_quote!(::core::marker::Send));
        item.supertraits
            .push(syn::parse_quote!(::core::marker::Sync));
        item.supertraits.push(syn::parse_quote!('static));
        for it in &mut item.items {
            let TraitItem::Fn(f) = it else { continue };
            f.sig.asyncness = None;
            if let ReturnType::Type(arrow, ty) = &f.sig.output {
                let span = ty.span();
                let future: Type = syn::parse_quote_spanned! {span=>
                    impl ::core::future::Future<Output = #ty> + ::core::marker::Send
                };
                f.sig.output = ReturnType::Type(*arrow, Box::new(future));
            }
        }
        item.into_token_stream()
    }

    fn server_struct(&self) -> TokenStream {
        let Gen {
            krate,
            server,
            trait_ident,
            ..
        } = self;
        let vis = &self.svc.item.vis;
        let doc = format!(
            "Serves a [`{trait_ident}`] implementation: routes each call of the `{}` \
             service to the matching method. Register it with the knafeh `Server`.",
            self.full_name
        );
        quote! {
            #[doc = #doc]
            #vis struct #server<T> {
                inner: #krate::__private::Arc<T>,
            }
        }
    }

    fn server_constructors(&self) -> TokenStream {
        let Gen {
            krate,
            server,
            trait_ident,
            ..
        } = self;
        quote! {
            impl<T: #trait_ident> #server<T> {
                /// Serves `inner`.
                pub fn new(inner: T) -> Self {
                    Self::from_arc(#krate::__private::Arc::new(inner))
                }

                /// Serves an `inner` that is shared with other code.
                pub fn from_arc(inner: #krate::__private::Arc<T>) -> Self {
                    Self { inner }
                }
            }
        }
    }

    /// `Clone` without a `T: Clone` bound: only the `Arc` is cloned.
    fn server_clone(&self) -> TokenStream {
        let server = &self.server;
        quote! {
            impl<T> ::core::clone::Clone for #server<T> {
                fn clone(&self) -> Self {
                    Self {
                        inner: ::core::clone::Clone::clone(&self.inner),
                    }
                }
            }
        }
    }

    fn service_impl(&self) -> TokenStream {
        let Gen {
            krate,
            server,
            client,
            trait_ident,
            ..
        } = self;
        let names = self.svc.rpcs.iter().map(|r| &r.wire_name);
        let has_method = if self.svc.rpcs.is_empty() {
            quote!({
                let _ = method;
                false
            })
        } else {
            quote!(match method {
                #(#names)|* => true,
                _ => false,
            })
        };
        let arms = self.svc.rpcs.iter().map(|r| self.call_arm(r));
        let bounds = self.message_bounds(&self.svc.rpcs);
        quote! {
            impl<T: #trait_ident> #krate::__private::Service for #server<T>
            where
                #bounds
            {
                fn name(&self) -> &'static str {
                    #client::SERVICE_NAME
                }

                fn has_method(&self, method: &str) -> bool {
                    #has_method
                }

                fn call(
                    &self,
                    method: &str,
                    call: #krate::__private::Call,
                ) -> #krate::__private::BoxFuture<
                    ::core::result::Result<#krate::__private::Reply, #krate::Status>,
                > {
                    match method {
                        #(#arms)*
                        _ => #krate::__private::unknown_method(method),
                    }
                }
            }
        }
    }

    /// One `match` arm of `Service::call`. The handler closure is spanned
    /// at the user's return type and the arguments at the user's argument
    /// types, so a wrong `Status`, `Streaming` or `Context` type is reported
    /// there.
    fn call_arm(&self, rpc: &Rpc<'_>) -> TokenStream {
        let Gen {
            krate,
            client,
            trait_ident,
            ..
        } = self;
        let wire = &rpc.wire_name;
        let name = rpc.name;
        let path = self.path_const(rpc);
        let req_ty = rpc.request;
        let runner = match rpc.kind {
            Kind::Unary { .. } => quote!(unary),
            Kind::ServerStreaming { .. } => quote!(server_streaming),
        };
        let (ctx_param, ctx_arg) = match rpc.context {
            Some(ty) => (quote!(ctx), quote_spanned!(ty.span()=> , ctx)),
            None => (quote!(_ctx), quote!()),
        };
        let handler = quote_spanned! {rpc.output.span()=>
            move |req: #req_ty, #ctx_param: #krate::Context| async move {
                <T as #trait_ident>::#name(&*inner, req #ctx_arg).await
            }
        };
        quote! {
            #wire => {
                let inner = ::core::clone::Clone::clone(&self.inner);
                #krate::__private::#runner(#client::#path, call, #handler)
            }
        }
    }

    fn client_struct(&self) -> TokenStream {
        let Gen {
            krate,
            client,
            trait_ident,
            ..
        } = self;
        let vis = &self.svc.item.vis;
        let doc = format!(
            "Calls the `{}` service: one method per method of [`{trait_ident}`]. \
             Cheap to clone; clones share the connection.",
            self.full_name
        );
        quote! {
            #[doc = #doc]
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            #vis struct #client {
                client: #krate::Client,
            }
        }
    }

    fn client_impl(&self) -> TokenStream {
        let Gen { krate, client, .. } = self;
        let full_name = &self.full_name;
        let name_doc = format!("The service name, `{full_name}`.");
        let consts = self.svc.rpcs.iter().map(|r| self.path_const_item(r));
        let methods = self.svc.rpcs.iter().map(|r| self.client_methods(r));
        quote! {
            impl #client {
                #[doc = #name_doc]
                pub const SERVICE_NAME: &'static str = #full_name;
                #(#consts)*

                /// Calls the service over `client`'s connection.
                pub fn new(client: #krate::Client) -> Self {
                    Self { client }
                }

                /// The underlying client.
                pub fn client(&self) -> &#krate::Client {
                    &self.client
                }

                #(#methods)*
            }
        }
    }

    fn path_const_item(&self, rpc: &Rpc<'_>) -> TokenStream {
        let ident = self.path_const(rpc);
        let path = self.path(rpc);
        let doc = format!(
            "The path of [`{}::{}`]: `{path}`.",
            self.trait_ident, rpc.name
        );
        quote! {
            #[doc = #doc]
            pub const #ident: &'static str = #path;
        }
    }

    /// `m` and `m_with`, with the user's docs.
    fn client_methods(&self, rpc: &Rpc<'_>) -> TokenStream {
        let krate = self.krate;
        let name = rpc.name;
        let with = format_ident!(
            "{}_with",
            syn::ext::IdentExt::unraw(name),
            span = name.span()
        );
        let path = self.path_const(rpc);
        let req = rpc.request;
        let bounds = self.message_bounds([rpc]);
        let docs: TokenStream = if rpc.docs.is_empty() {
            let doc = format!("Calls `{}`.", self.path(rpc));
            quote!(#[doc = #doc])
        } else {
            rpc.docs.iter().map(|a| a.to_token_stream()).collect()
        };
        let with_doc = format!(
            "[`Self::{}`] with per-call options (timeout, metadata).",
            rpc.name
        );
        match rpc.kind {
            Kind::Unary { response } => {
                let with_doc2 = "The response keeps the metadata the server sent along.";
                quote! {
                    #docs
                    pub async fn #name(
                        &self,
                        req: #req,
                    ) -> ::core::result::Result<#response, #krate::Status>
                    where
                        #bounds
                    {
                        self.#with(req, #krate::CallOptions::new())
                            .await
                            .map(#krate::Response::into_inner)
                    }

                    #[doc = #with_doc]
                    #[doc = ""]
                    #[doc = #with_doc2]
                    pub async fn #with(
                        &self,
                        req: #req,
                        options: #krate::CallOptions,
                    ) -> ::core::result::Result<#krate::Response<#response>, #krate::Status>
                    where
                        #bounds
                    {
                        self.client.unary::<#req, #response>(Self::#path, &req, options).await
                    }
                }
            }
            Kind::ServerStreaming { item } => quote! {
                #docs
                pub async fn #name(
                    &self,
                    req: #req,
                ) -> ::core::result::Result<#krate::Streaming<#item>, #krate::Status>
                where
                    #bounds
                {
                    self.#with(req, #krate::CallOptions::new()).await
                }

                #[doc = #with_doc]
                pub async fn #with(
                    &self,
                    req: #req,
                    options: #krate::CallOptions,
                ) -> ::core::result::Result<#krate::Streaming<#item>, #krate::Status>
                where
                    #bounds
                {
                    self.client.server_streaming::<#req, #item>(Self::#path, &req, options).await
                }
            },
        }
    }

    /// Every request, response and item type must be a serde type; each is
    /// checked where the user wrote it, so a non-serde type gets one
    /// readable error on that type.
    fn message_checks(&self) -> TokenStream {
        let krate = self.krate;
        let checks = self.svc.rpcs.iter().flat_map(message_types).map(|ty| {
            quote_spanned! {ty.span()=>
                let _ = assert_message::<#ty>;
            }
        });
        let span = Span::call_site();
        quote_spanned! {span=>
            const _: () = {
                fn assert_message<M: #krate::__private::Message>() {}
                #(#checks)*
            };
        }
    }
}

/// The request type and the response (or item) type of `rpc`.
fn message_types<'r>(rpc: &'r Rpc<'r>) -> [&'r Type; 2] {
    let out = match rpc.kind {
        Kind::Unary { response } => response,
        Kind::ServerStreaming { item } => item,
    };
    [rpc.request, out]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(attr: TokenStream, item: TokenStream) -> String {
        service(attr, item).to_string()
    }

    fn greeter() -> TokenStream {
        quote! {
            /// Greets.
            pub trait Greeter {
                /// Unary.
                async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
                async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status>;
                async fn whoami(&self, req: Empty, ctx: knafeh::Context) -> Result<Who, Status>;
            }
        }
    }

    #[test]
    fn paths_use_the_package_and_the_method_name_as_written() {
        let out = expand(quote!(package = "helloworld"), greeter());
        assert!(out.contains(r#"SERVICE_NAME : & 'static str = "helloworld.Greeter""#));
        assert!(out.contains(r#"SAY_HELLO : & 'static str = "/helloworld.Greeter/say_hello""#));
        assert!(out.contains(r#"COUNT_TO : & 'static str = "/helloworld.Greeter/count_to""#));
    }

    #[test]
    fn without_package_the_service_name_is_the_trait_name() {
        let out = expand(quote!(), greeter());
        assert!(out.contains(r#"SERVICE_NAME : & 'static str = "Greeter""#));
        assert!(out.contains(r#""/Greeter/whoami""#));
    }

    #[test]
    fn trait_methods_become_send_futures() {
        let out = expand(quote!(), greeter());
        assert!(!out.contains("async fn say_hello (& self , req : HelloRequest)"));
        assert!(out.contains(
            "fn say_hello (& self , req : HelloRequest) -> impl :: core :: future :: Future < Output = Result < HelloReply , Status > > + :: core :: marker :: Send"
        ));
        assert!(out.contains(
            "pub trait Greeter : :: core :: marker :: Send + :: core :: marker :: Sync + 'static"
        ));
    }

    #[test]
    fn user_supertraits_are_kept() {
        let out = expand(
            quote!(),
            quote!(
                trait T: Named {
                    async fn m(&self, r: R) -> Result<X, Status>;
                }
            ),
        );
        assert!(out.contains("trait T : Named + :: core :: marker :: Send"));
    }

    #[test]
    fn server_routes_by_kind_and_passes_context_only_when_asked() {
        let out = expand(quote!(), greeter());
        assert!(out.contains(":: knafeh :: __private :: unary (GreeterClient :: SAY_HELLO"));
        assert!(
            out.contains(":: knafeh :: __private :: server_streaming (GreeterClient :: COUNT_TO")
        );
        assert!(out.contains("< T as Greeter > :: say_hello (& * inner , req) . await"));
        assert!(out.contains("< T as Greeter > :: whoami (& * inner , req , ctx) . await"));
        assert!(out.contains(r#""say_hello" | "count_to" | "whoami" => true"#));
    }

    #[test]
    fn client_has_plain_and_with_methods_and_user_docs() {
        let out = expand(quote!(), greeter());
        assert!(out.contains("pub async fn say_hello_with"));
        assert!(out.contains("pub async fn count_to_with"));
        assert!(out.contains(
            "-> :: core :: result :: Result < :: knafeh :: Streaming < Count > , :: knafeh :: Status >"
        ));
        assert!(out.contains(r#"# [doc = r" Unary."] pub async fn say_hello"#));
    }

    #[test]
    fn crate_option_replaces_every_runtime_path() {
        let out = expand(quote!(crate = "::renamed"), greeter());
        assert!(!out.contains(":: knafeh"), "{out}");
        assert!(out.contains(":: renamed :: __private :: Service"));
    }

    #[test]
    fn message_checks_cover_requests_responses_and_items() {
        let out = expand(quote!(), greeter());
        for ty in [
            "HelloRequest",
            "HelloReply",
            "CountRequest",
            "Count",
            "Empty",
            "Who",
        ] {
            assert!(
                out.contains(&format!("let _ = assert_message :: < {ty} >")),
                "{ty}"
            );
        }
    }

    #[test]
    fn empty_trait_expands() {
        let out = expand(
            quote!(),
            quote!(
                trait Empty {}
            ),
        );
        assert!(out.contains("let _ = method ; false"));
    }

    #[test]
    fn on_error_the_trait_is_passed_through_unchanged() {
        let item = quote!(
            pub trait T {
                fn m(&self, r: R) -> Result<X, Status>;
            }
        );
        let out = expand(quote!(), item.clone());
        assert!(out.contains("compile_error"));
        assert!(out.ends_with(&item.to_string()));
        assert!(!out.contains("TServer"));
    }

    #[test]
    fn option_errors_and_trait_errors_are_reported_together() {
        let item = quote!(
            trait T {
                fn m(&self, r: R) -> Result<X, Status>;
            }
        );
        let out = expand(quote!(bogus = "x"), item);
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
    }

    #[test]
    fn the_passed_through_trait_drops_what_rustc_would_also_reject() {
        let item: ItemTrait = syn::parse_quote! {
            trait T {
                const fn a(mut self, (x, y): R, mut z: S) -> X;
                async fn s(&self, r: R) -> Result<Streaming, Status>;
                async fn b(&self, r: R) -> X;
                async fn b(&self, r: R) -> Y;
            }
        };
        let out = quiet_trait(&item).into_token_stream().to_string();
        assert_eq!(
            out,
            "trait T { fn a (self , _ : R , z : S) -> X ; async fn s (& self , r : R) ; async fn b (& self , r : R) -> X ; }"
        );
    }

    #[test]
    fn not_a_trait_is_rejected_and_passed_through() {
        let out = expand(
            quote!(),
            quote!(
                struct S;
            ),
        );
        assert!(out.contains("applies to a trait"));
        assert!(out.ends_with("struct S ;"));
    }
}
