//! The Python classes of `#[pyservice]`: the async and blocking clients
//! and the service wrapper for Python implementations.

use crate::valid::Kind;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, ToTokens};
use syn::Path;

use super::*;

impl Gen<'_> {
    /// The Python classes of `#[pyservice]`: `{Trait}Client` (async) and
    /// `{Trait}BlockingClient`, as Rust types `{Trait}PyClient` and
    /// `{Trait}PyBlockingClient` for the user's `#[pymodule]`; then the
    /// service wrapper.
    pub(super) fn python_items(&self, py: &Path, module: Option<&str>) -> TokenStream {
        let module = module.map(|m| quote!(module = #m,));
        let pyo3_path = format!("{}::__private::pyo3", quote!(#py)).replace(' ', "");
        let mut out = TokenStream::new();
        for blocking in [false, true] {
            out.extend(self.python_client(py, &pyo3_path, module.as_ref(), blocking));
        }
        out.extend(self.python_service(py, &pyo3_path, module));
        out
    }

    /// One client class: `connect` and one method per RPC.
    fn python_client(
        &self,
        py: &Path,
        pyo3_path: &str,
        module: Option<&TokenStream>,
        blocking: bool,
    ) -> TokenStream {
        let trait_ident = self.trait_ident;
        let vis = &self.svc.item.vis;
        let p = quote!(#py::__private);
        let o = quote!(#py::__private::pyo3);
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
        let connect = python_connect(py, blocking);
        let methods = self
            .svc
            .rpcs
            .iter()
            .map(|rpc| self.python_method(py, rpc, blocking));
        quote! {
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
        }
    }

    /// One client method: the request as one object or keyword fields,
    /// plus `timeout` and `metadata`.
    fn python_method(&self, py: &Path, rpc: &Rpc<'_>, blocking: bool) -> TokenStream {
        let client = &self.client;
        let p = quote!(#py::__private);
        let o = quote!(#py::__private::pyo3);
        let name = rpc.name;
        let req = rpc.request;
        let path = self.path_const(rpc);
        let docs: TokenStream = rpc.docs.iter().map(|a| a.to_token_stream()).collect();
        // Unary: `unary_async`/`unary_blocking`; streams: one
        // `server_streaming` helper, wrapped in the iterator type.
        let (call, ret, wrap) = match (&rpc.kind, blocking) {
            (Kind::Unary { response }, false) => (
                quote!(#p::unary_async::<#req, #response>),
                quote!(#o::Bound<'py, #o::PyAny>),
                None,
            ),
            (Kind::Unary { response }, true) => (
                quote!(#p::unary_blocking::<#req, #response>),
                quote!(#o::Py<#o::PyAny>),
                None,
            ),
            (Kind::ServerStreaming { item }, false) => (
                quote!(#p::server_streaming::<#req, #item>),
                quote!(#p::AsyncStream),
                Some(quote!(#p::AsyncStream)),
            ),
            (Kind::ServerStreaming { item }, true) => (
                quote!(#p::server_streaming::<#req, #item>),
                quote!(#p::BlockingStream),
                Some(quote!(#p::BlockingStream)),
            ),
            (Kind::ClientStreaming { .. } | Kind::BidiStreaming { .. }, _) => {
                unreachable!("rejected by valid::python_names")
            }
        };
        let body =
            quote!(#call(py, &self.inner, #client::#path, request, fields, timeout, metadata));
        let body = match wrap {
            None => body,
            Some(wrap) => {
                quote!(#body.map(<#wrap as ::core::convert::From<#p::StreamItems>>::from))
            }
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
    }

    /// `{Trait}Service(implementation)`: wraps a Python implementation so
    /// `knafeh.Server` (or a Rust server, through `knafeh_py::PyService`)
    /// can serve it; converts payloads with the Rust types.
    /// Each method's name and whether it streams, for `_knafeh_methods`.
    fn python_method_table(&self) -> (Vec<String>, Vec<bool>) {
        let rpcs = &self.svc.rpcs;
        let names = rpcs.iter().map(|r| r.name.to_string()).collect();
        let streaming = rpcs
            .iter()
            .map(|r| matches!(r.kind, Kind::ServerStreaming { .. }))
            .collect();
        (names, streaming)
    }

    /// The `match` arms of `_knafeh_decode` (request payload → Python)
    /// and `_knafeh_encode` (Python → response payload), one per method.
    fn python_codec_arms(&self, py: &Path) -> (Vec<TokenStream>, Vec<TokenStream>) {
        let client = &self.client;
        let p = quote!(#py::__private);
        let decode = self.svc.rpcs.iter().map(|rpc| {
            let name = rpc.name.to_string();
            let req = rpc.request;
            let path = self.path_const(rpc);
            quote!(#name => #p::decode_to_py::<#req>(py, #client::#path, codec, payload),)
        });
        let encode = self.svc.rpcs.iter().map(|rpc| {
            let name = rpc.name.to_string();
            let path = self.path_const(rpc);
            let resp = rpc.kind.response_message();
            quote!(#name => #p::encode_from_py::<#resp>(py, #client::#path, codec, value),)
        });
        (decode.collect(), encode.collect())
    }

    pub(super) fn python_service(
        &self,
        py: &Path,
        pyo3_path: &str,
        module: Option<TokenStream>,
    ) -> TokenStream {
        let trait_ident = self.trait_ident;
        let client = &self.client;
        let vis = &self.svc.item.vis;
        let o = quote!(#py::__private::pyo3);
        let rust_name = format_ident!("{}PyService", trait_ident);
        let py_name = format!("{trait_ident}Service");
        let class_doc = format!(
            "Serves a Python implementation of `{}`: `{py_name}(impl)`, where `impl` has one method per service method (`def` or `async def`; generators or async generators for streams). Add it to a `knafeh.Server`.",
            self.full_name
        );
        let (names, streaming) = self.python_method_table();
        let (decode_arms, encode_arms) = self.python_codec_arms(py);
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
}

/// The `connect` static method of a client class: the same arguments for
/// both; the blocking one returns the client, the async one a coroutine.
fn python_connect(py: &Path, blocking: bool) -> TokenStream {
    let p = quote!(#py::__private);
    let o = quote!(#py::__private::pyo3);
    let (doc, lifetime, ret, finish) = if blocking {
        (
            "Connects (blocking). The server certificate is verified against `ca` (a PEM file) unless `insecure=True`.",
            quote!(<'_>),
            quote!(Self),
            quote!(#p::connect_blocking(py, opts).map(|inner| Self { inner })),
        )
    } else {
        (
            "`await Client.connect(addr, ca=...)`. The server certificate is verified against `ca` (a PEM file) unless `insecure=True`.",
            quote!(<'py>),
            quote!(#o::Bound<'py, #o::PyAny>),
            quote!(#p::connect_async(py, opts, |inner| Self { inner })),
        )
    };
    let generics = if blocking { quote!() } else { quote!(<'py>) };
    quote! {
        #[doc = #doc]
        #[staticmethod]
        #[pyo3(signature = (addr, *, ca = None, server_name = None, insecure = false, codec = None, timeout = None, connect_timeout = None))]
        #[allow(clippy::too_many_arguments)]
        fn connect #generics(
            py: #o::Python #lifetime,
            addr: ::std::string::String,
            ca: ::core::option::Option<::std::string::String>,
            server_name: ::core::option::Option<::std::string::String>,
            insecure: bool,
            codec: ::core::option::Option<::std::string::String>,
            timeout: ::core::option::Option<f64>,
            connect_timeout: ::core::option::Option<f64>,
        ) -> #o::PyResult<#ret> {
            let opts = #p::ConnectOptions { addr, ca, server_name, insecure, codec, timeout, connect_timeout };
            #finish
        }
    }
}
