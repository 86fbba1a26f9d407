//! The Python classes of `#[pyservice]`: the async and blocking clients
//! and the service wrapper for Python implementations.

use crate::valid::Kind;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, ToTokens};
use syn::Path;

use super::*;

/// A generated client method's pyo3 signature, its parameters before and
/// after `timeout`/`metadata` (the Rust order the signature follows), its
/// return type and its body.
type CallParts = (
    TokenStream,
    (TokenStream, TokenStream),
    TokenStream,
    TokenStream,
);

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
        let schema = self.python_schema(py);
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
                #schema
                #(#methods)*
            }
        }
    }

    /// One client method. One request (unary, server streaming): as one
    /// object or keyword fields; a stream of requests (client streaming,
    /// bidirectional): as an iterable (or async iterable); plus `timeout`
    /// and `metadata`.
    fn python_method(&self, py: &Path, rpc: &Rpc<'_>, blocking: bool) -> TokenStream {
        let o = quote!(#py::__private::pyo3);
        let name = rpc.name;
        let docs: TokenStream = rpc.docs.iter().map(|a| a.to_token_stream()).collect();
        let (signature, (request_param, fields_param), ret, body) = if rpc.kind.streams_requests() {
            self.python_stream_call(py, rpc, blocking)
        } else {
            self.python_one_call(py, rpc, blocking)
        };
        quote! {
            #docs
            #[pyo3(signature = #signature)]
            fn #name<'py>(
                &self,
                py: #o::Python<'py>,
                #request_param
                timeout: ::core::option::Option<f64>,
                metadata: ::core::option::Option<&#o::Bound<'py, #o::PyAny>>,
                #fields_param
            ) -> #o::PyResult<#ret> {
                #body
            }
        }
    }

    /// Signature, request parameters, return type and body of a method
    /// whose request is one message.
    fn python_one_call(&self, py: &Path, rpc: &Rpc<'_>, blocking: bool) -> CallParts {
        let client = &self.client;
        let p = quote!(#py::__private);
        let o = quote!(#py::__private::pyo3);
        let req = rpc.request;
        let path = self.path_const(rpc);
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
            (kind, _) => {
                let item = kind.response_message();
                let wrap = if blocking {
                    quote!(#p::BlockingStream)
                } else {
                    quote!(#p::AsyncStream)
                };
                (
                    quote!(#p::server_streaming::<#req, #item>),
                    wrap.clone(),
                    Some(wrap),
                )
            }
        };
        // Calls to `#[knafeh(idempotent)]` methods may be retried and sent
        // as 0-RTT early data.
        let idempotent = rpc.idempotent;
        let body = quote!(#call(
            py,
            &self.inner,
            (#client::#path, #idempotent),
            request,
            fields,
            timeout,
            metadata
        ));
        let body = match wrap {
            None => body,
            Some(wrap) => {
                quote!(#body.map(<#wrap as ::core::convert::From<#p::StreamItems>>::from))
            }
        };
        let signature = quote!((request = None, /, *, timeout = None, metadata = None, **fields));
        let request = quote!(request: ::core::option::Option<&#o::Bound<'py, #o::PyAny>>,);
        let fields = quote!(fields: ::core::option::Option<&#o::Bound<'py, #o::types::PyDict>>,);
        (signature, (request, fields), ret, body)
    }

    /// Signature, request parameter, return type and body of a method
    /// whose request is a stream: client streaming returns the reply (an
    /// awaitable for the async client); bidirectional returns a
    /// `BidiCall` (async) or an iterator of replies (blocking).
    fn python_stream_call(&self, py: &Path, rpc: &Rpc<'_>, blocking: bool) -> CallParts {
        let client = &self.client;
        let p = quote!(#py::__private);
        let o = quote!(#py::__private::pyo3);
        let path = self.path_const(rpc);
        let args = quote!((py, &self.inner, #client::#path, requests, timeout, metadata));
        let (ret, body) = match (&rpc.kind, blocking) {
            (Kind::ClientStreaming { request, response }, false) => (
                quote!(#o::Bound<'py, #o::PyAny>),
                quote!(#p::client_streaming_async::<#request, #response> #args),
            ),
            (Kind::ClientStreaming { request, response }, true) => (
                quote!(#o::Py<#o::PyAny>),
                quote!(#p::client_streaming_blocking::<#request, #response> #args),
            ),
            (Kind::BidiStreaming { request, item }, false) => (
                quote!(#p::BidiCall),
                quote!(#p::bidi_streaming_async::<#request, #item> #args),
            ),
            (Kind::BidiStreaming { request, item }, true) => (
                quote!(#p::BlockingStream),
                quote!(#p::bidi_streaming_blocking::<#request, #item> #args),
            ),
            (Kind::Unary { .. } | Kind::ServerStreaming { .. }, _) => {
                unreachable!("python_stream_call is only called for request streams")
            }
        };
        // The async bidirectional call may start without requests and
        // take them from `send()`.
        let (signature, param) = if blocking || !rpc.kind.streams_responses() {
            (
                quote!((requests, /, *, timeout = None, metadata = None)),
                quote!(requests: &#o::Bound<'py, #o::PyAny>,),
            )
        } else {
            (
                quote!((requests = None, /, *, timeout = None, metadata = None)),
                quote!(requests: ::core::option::Option<&#o::Bound<'py, #o::PyAny>>,),
            )
        };
        (signature, (param, TokenStream::new()), ret, body)
    }

    /// `{Trait}Service(implementation)`: wraps a Python implementation so
    /// `knafeh.Server` (or a Rust server, through `knafeh_py::PyService`)
    /// can serve it; converts payloads with the Rust types.
    /// Each method's name, whether it streams requests and whether it
    /// streams responses, for `_knafeh_methods`.
    fn python_method_table(&self) -> (Vec<String>, Vec<bool>, Vec<bool>) {
        let rpcs = &self.svc.rpcs;
        let names = rpcs.iter().map(|r| r.name.to_string()).collect();
        let requests = rpcs.iter().map(|r| r.kind.streams_requests()).collect();
        let responses = rpcs.iter().map(|r| r.kind.streams_responses()).collect();
        (names, requests, responses)
    }

    /// The `match` arms of `_knafeh_decode` (one request message's
    /// payload → Python) and `_knafeh_encode` (Python → one response
    /// message's payload), one per method.
    fn python_codec_arms(&self, py: &Path) -> (Vec<TokenStream>, Vec<TokenStream>) {
        let client = &self.client;
        let p = quote!(#py::__private);
        let decode = self.svc.rpcs.iter().map(|rpc| {
            let name = rpc.name.to_string();
            let req = match rpc.kind {
                Kind::ClientStreaming { request, .. } | Kind::BidiStreaming { request, .. } => {
                    request
                }
                Kind::Unary { .. } | Kind::ServerStreaming { .. } => rpc.request,
            };
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
            "Serves a Python implementation of `{}`: `{py_name}(impl)`, where `impl` has one method per service method (`def` or `async def`; generators or async generators for response streams; a request stream arrives as a `knafeh.RequestStream`, `async for` or `for`). Add it to a `knafeh.Server`.",
            self.full_name
        );
        let (names, stream_requests, stream_responses) = self.python_method_table();
        let schema = self.python_schema(py);
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

                #schema

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
                fn _knafeh_methods(&self) -> ::std::vec::Vec<(&'static str, bool, bool)> {
                    ::std::vec![#((#names, #stream_requests, #stream_responses)),*]
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

impl Gen<'_> {
    /// The static method `__knafeh_schema__()` every generated class has:
    /// the service's `knafeh::schema::ServiceSchema` as JSON, which
    /// `python -m knafeh.stubgen` turns into the module's `.pyi`.
    fn python_schema(&self, py: &Path) -> TokenStream {
        let client = &self.client;
        let p = quote!(#py::__private);
        let o = quote!(#py::__private::pyo3);
        quote! {
            /// The service's schema (`knafeh::schema::ServiceSchema`) as
            /// JSON; `python -m knafeh.stubgen` writes the stubs from it.
            #[staticmethod]
            fn __knafeh_schema__() -> #o::PyResult<::std::string::String> {
                #p::schema_json(#client::schema())
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
        #[pyo3(signature = (addr, *, ca = None, server_name = None, insecure = false, codec = None, timeout = None, connect_timeout = None, compression = None, zero_rtt = false))]
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
            compression: ::core::option::Option<::std::string::String>,
            zero_rtt: bool,
        ) -> #o::PyResult<#ret> {
            let opts = #p::ConnectOptions { addr, ca, server_name, insecure, codec, timeout, connect_timeout, compression, zero_rtt };
            #finish
        }
    }
}
