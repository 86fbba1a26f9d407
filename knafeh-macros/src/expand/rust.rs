//! The Rust items of `#[service]`: the trait, the server wrapper routing
//! every method, and the typed client.

use crate::valid::{Kind, Rpc};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ItemTrait, ReturnType, TraitItem, Type};

use super::*;

impl Gen<'_> {
    /// The user's trait, made object-friendly for a multi-threaded server:
    /// `Send + Sync + 'static`, and every `async fn` turned into a `fn`
    /// returning a `Send` future (implementors still write `async fn`).
    pub(super) fn trait_item(&self) -> TokenStream {
        let mut item: ItemTrait = self.svc.item.clone();
        item.colon_token.get_or_insert_with(Default::default);
        item.supertraits
            .push(syn::parse_quote!(::core::marker::Send));
        item.supertraits
            .push(syn::parse_quote!(::core::marker::Sync));
        item.supertraits.push(syn::parse_quote!('static));
        for it in &mut item.items {
            let TraitItem::Fn(f) = it else { continue };
            f.attrs.retain(|a| !parse::is_option(a));
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

    pub(super) fn server_struct(&self) -> TokenStream {
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

    pub(super) fn server_constructors(&self) -> TokenStream {
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
    pub(super) fn server_clone(&self) -> TokenStream {
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

    pub(super) fn service_impl(&self) -> TokenStream {
        let Gen {
            krate,
            server,
            client,
            trait_ident,
            ..
        } = self;
        let shapes = self.svc.rpcs.iter().map(|r| {
            let name = &r.wire_name;
            let shape = if r.kind.streams_requests() {
                quote!(Stream)
            } else {
                quote!(One)
            };
            quote!(#name => ::core::option::Option::Some(#krate::__private::RequestShape::#shape),)
        });
        let request_shape = quote!(match method {
            #(#shapes)*
            _ => ::core::option::Option::None,
        });
        let idempotent = self.idempotent_match();
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

                fn schema(
                    &self,
                ) -> ::core::result::Result<
                    #krate::schema::ServiceSchema,
                    #krate::schema::SchemaError,
                > {
                    #client::schema()
                }

                fn request_shape(
                    &self,
                    method: &str,
                ) -> ::core::option::Option<#krate::__private::RequestShape> {
                    #request_shape
                }

                fn idempotent(&self, method: &str) -> bool {
                    #idempotent
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

    /// The body of `Service::idempotent`: whether a method name is one of
    /// the methods declared `#[knafeh(idempotent)]` (the only ones served
    /// from 0-RTT early data).
    fn idempotent_match(&self) -> TokenStream {
        let idempotent: Vec<_> = self
            .svc
            .rpcs
            .iter()
            .filter(|r| r.idempotent)
            .map(|r| &r.wire_name)
            .collect();
        if idempotent.is_empty() {
            quote!({
                let _ = method;
                false
            })
        } else {
            quote!(::core::matches!(method, #(#idempotent)|*))
        }
    }

    /// One `match` arm of `Service::call`. The handler closure is spanned
    /// at the user's return type and the arguments at the user's argument
    /// types, so a wrong `Status`, `Streaming` or `Context` type is reported
    /// there.
    pub(super) fn call_arm(&self, rpc: &Rpc<'_>) -> TokenStream {
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
            Kind::ClientStreaming { .. } => quote!(client_streaming),
            Kind::BidiStreaming { .. } => quote!(bidi_streaming),
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

    pub(super) fn client_struct(&self) -> TokenStream {
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

    pub(super) fn client_impl(&self) -> TokenStream {
        let Gen { krate, client, .. } = self;
        let full_name = &self.full_name;
        let name_doc = format!("The service name, `{full_name}`.");
        let consts = self.svc.rpcs.iter().map(|r| self.path_const_item(r));
        let schema = self.client_schema();
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

                #schema

                #(#methods)*
            }
        }
    }

    /// `schema()`: the service's methods and the formats of their
    /// messages, traced from the message types when called.
    pub(super) fn client_schema(&self) -> TokenStream {
        let krate = self.krate;
        let s = quote!(#krate::schema);
        let doc = parse::doc_text(&self.svc.item.attrs);
        let bounds = self.message_bounds(&self.svc.rpcs);
        let methods = self.svc.rpcs.iter().map(|rpc| {
            let name = &rpc.wire_name;
            let path = self.path_const(rpc);
            let kind = match rpc.kind {
                Kind::Unary { .. } => quote!(Unary),
                Kind::ServerStreaming { .. } => quote!(ServerStreaming),
                Kind::ClientStreaming { .. } => quote!(ClientStreaming),
                Kind::BidiStreaming { .. } => quote!(BidiStreaming),
            };
            let idempotent = rpc.idempotent;
            let doc = parse::doc_text(rpc.docs.iter().copied());
            let [req, resp] = message_types(rpc);
            let trace =
                |ty: &Type| quote!(<#ty as #krate::__private::Message>::trace_schema(&mut tracer)?);
            let (req, resp) = (trace(req), trace(resp));
            quote! {
                #s::MethodSchema {
                    name: ::std::borrow::ToOwned::to_owned(#name),
                    path: ::std::borrow::ToOwned::to_owned(Self::#path),
                    kind: #s::CallKind::#kind,
                    idempotent: #idempotent,
                    doc: ::std::borrow::ToOwned::to_owned(#doc),
                    request: #req,
                    response: #resp,
                }
            }
        });
        let fn_doc = format!(
            "The schema of the `{}` service: its methods, and the formats of their \
             messages traced from the message types.",
            self.full_name
        );
        quote! {
            #[doc = #fn_doc]
            #[doc = ""]
            #[doc = " # Errors"]
            #[doc = " A `SchemaError` naming a message type that cannot be described."]
            pub fn schema() -> ::core::result::Result<#s::ServiceSchema, #s::SchemaError>
            where
                #bounds
            {
                #[allow(unused_mut)]
                let mut tracer = #s::Tracer::new();
                let methods = ::std::vec![#(#methods),*];
                ::core::result::Result::Ok(#s::ServiceSchema {
                    name: ::std::borrow::ToOwned::to_owned(Self::SERVICE_NAME),
                    doc: ::std::borrow::ToOwned::to_owned(#doc),
                    methods,
                    types: tracer.into_types(),
                })
            }
        }
    }

    pub(super) fn path_const_item(&self, rpc: &Rpc<'_>) -> TokenStream {
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

    /// The request parameter's type of a client method, and the runtime
    /// call its `*_with` variant makes. A request stream is anything
    /// `IntoStreaming`; the runtime takes the messages as a `Streaming`.
    fn client_call(&self, rpc: &Rpc<'_>) -> (TokenStream, TokenStream) {
        let krate = self.krate;
        let path = self.path_const(rpc);
        let req = rpc.request;
        let into = |item: &Type| {
            (
                quote!(impl #krate::IntoStreaming<#item>),
                quote!(#krate::IntoStreaming::into_streaming(req)),
            )
        };
        let (param, runner, arg) = match rpc.kind {
            Kind::Unary { response } => {
                (quote!(#req), quote!(unary::<#req, #response>), quote!(&req))
            }
            Kind::ServerStreaming { item } => (
                quote!(#req),
                quote!(server_streaming::<#req, #item>),
                quote!(&req),
            ),
            Kind::ClientStreaming { request, response } => {
                let (param, arg) = into(request);
                (param, quote!(client_streaming::<#request, #response>), arg)
            }
            Kind::BidiStreaming { request, item } => {
                let (param, arg) = into(request);
                (param, quote!(bidi_streaming::<#request, #item>), arg)
            }
        };
        // Idempotent methods may be retried and hedged after a handler saw
        // the call (see `knafeh::RetryPolicy`).
        let options = if rpc.idempotent {
            quote!(options.idempotent(true))
        } else {
            quote!(options)
        };
        (
            param,
            quote!(self.client.#runner(Self::#path, #arg, #options)),
        )
    }

    /// `m` and `m_with`, with the user's docs.
    pub(super) fn client_methods(&self, rpc: &Rpc<'_>) -> TokenStream {
        let krate = self.krate;
        let name = rpc.name;
        let with = format_ident!(
            "{}_with",
            syn::ext::IdentExt::unraw(name),
            span = name.span()
        );
        let bounds = self.message_bounds([rpc]);
        let (req, call) = self.client_call(rpc);
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
        let response = rpc.kind.response_message();
        let (ret, plain_ret, plain) = if rpc.kind.streams_responses() {
            (
                quote!(#krate::Streaming<#response>),
                quote!(#krate::Streaming<#response>),
                quote!(self.#with(req, #krate::CallOptions::new()).await),
            )
        } else {
            (
                quote!(#krate::Response<#response>),
                quote!(#response),
                quote!(self.#with(req, #krate::CallOptions::new())
                    .await
                    .map(#krate::Response::into_inner)),
            )
        };
        let with_doc2 = if rpc.kind.streams_responses() {
            "The stream keeps the metadata the server sent along."
        } else {
            "The response keeps the metadata the server sent along."
        };
        quote! {
            #docs
            pub async fn #name(
                &self,
                req: #req,
            ) -> ::core::result::Result<#plain_ret, #krate::Status>
            where
                #bounds
            {
                #plain
            }

            #[doc = #with_doc]
            #[doc = ""]
            #[doc = #with_doc2]
            pub async fn #with(
                &self,
                req: #req,
                options: #krate::CallOptions,
            ) -> ::core::result::Result<#ret, #krate::Status>
            where
                #bounds
            {
                #call.await
            }
        }
    }
}
