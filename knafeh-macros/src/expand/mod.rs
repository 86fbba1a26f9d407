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
use syn::{Error, Ident, Item, Path, Type};

use crate::parse::{self, RawOptions};
use crate::valid::{self, Config, Errors, Kind, Rpc, Service};

mod fallback;
mod python;
mod rust;

use fallback::{fallback, quiet_trait};

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
        valid::python_names(&svc, &mut errors);
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

    fn path(&self, rpc: &Rpc<'_>) -> String {
        format!("/{}/{}", self.full_name, rpc.wire_name)
    }

    fn path_const(&self, rpc: &Rpc<'_>) -> Ident {
        Ident::new(&rpc.wire_name.to_uppercase(), rpc.name.span())
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

/// The request message type (a request stream's item) and the response
/// message type (a response stream's item) of `rpc`.
fn message_types<'r>(rpc: &'r Rpc<'r>) -> [&'r Type; 2] {
    let request = match rpc.kind {
        Kind::ClientStreaming { request, .. } | Kind::BidiStreaming { request, .. } => request,
        Kind::Unary { .. } | Kind::ServerStreaming { .. } => rpc.request,
    };
    [request, rpc.kind.response_message()]
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
                async fn add_up(&self, req: Streaming<Count>) -> Result<Total, Status>;
                async fn chat(&self, req: Streaming<Hello>, ctx: Context) -> Result<Streaming<Reply>, Status>;
            }
        }
    }

    #[test]
    fn the_names_table_matches_what_is_generated() {
        use crate::names::{PYTHON_MEMBERS, RUST_MEMBERS, SERVICE_NAME_CONST, WITH_SUFFIX};
        let rust = expand(quote!(), greeter());
        for m in RUST_MEMBERS {
            assert!(
                rust.contains(&format!("fn {} (", m.name)),
                "{} not generated",
                m.name
            );
        }
        assert!(
            rust.contains(&format!("const {SERVICE_NAME_CONST} :")),
            "{rust}"
        );
        assert!(
            rust.contains(&format!("fn say_hello{WITH_SUFFIX} (")),
            "{rust}"
        );
        let python = pyservice(quote!(), greeter()).to_string();
        for name in PYTHON_MEMBERS {
            assert!(
                python.contains(&format!("fn {name} (")),
                "{name} not generated"
            );
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
        let shape = |name: &str, shape: &str| {
            format!(
                r#""{name}" => :: core :: option :: Option :: Some (:: knafeh :: __private :: RequestShape :: {shape}) ,"#
            )
        };
        assert!(out.contains(&shape("say_hello", "One")), "{out}");
        assert!(out.contains(&shape("count_to", "One")));
        assert!(out.contains(&shape("add_up", "Stream")));
        assert!(out.contains(&shape("chat", "Stream")));
        assert!(out.contains(":: knafeh :: __private :: client_streaming (GreeterClient :: ADD_UP"));
        assert!(out.contains(":: knafeh :: __private :: bidi_streaming (GreeterClient :: CHAT"));
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
    fn clients_take_request_streams_as_into_streaming() {
        let out = expand(quote!(), greeter());
        assert!(out.contains("pub async fn add_up (& self , req : impl :: knafeh :: IntoStreaming < Count > ,) -> :: core :: result :: Result < Total , :: knafeh :: Status >"), "{out}");
        assert!(out.contains("self . client . client_streaming :: < Count , Total > (Self :: ADD_UP , :: knafeh :: IntoStreaming :: into_streaming (req) , options)"));
        assert!(out.contains("pub async fn chat_with (& self , req : impl :: knafeh :: IntoStreaming < Hello > , options : :: knafeh :: CallOptions ,) -> :: core :: result :: Result < :: knafeh :: Streaming < Reply > , :: knafeh :: Status >"));
        for ty in ["Count", "Total", "Hello", "Reply"] {
            assert!(
                out.contains(&format!("let _ = assert_message :: < {ty} >")),
                "{ty}"
            );
        }
        assert!(!out.contains("assert_message :: < Streaming"));
    }

    #[test]
    fn the_client_describes_the_service() {
        let out = expand(
            quote!(package = "helloworld"),
            quote! {
                /// Greets.
                ///
                /// Politely.
                pub trait Greeter {
                    /// Unary.
                    #[knafeh(idempotent)]
                    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
                    async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status>;
                    async fn add_up(&self, req: Streaming<Count>) -> Result<Total, Status>;
                    async fn chat(&self, req: Streaming<Hello>) -> Result<Streaming<Reply>, Status>;
                }
            },
        );
        assert!(out.contains("pub fn schema () -> :: core :: result :: Result < :: knafeh :: schema :: ServiceSchema , :: knafeh :: schema :: SchemaError > where"), "{out}");
        // Only the idempotent method's calls are declared idempotent.
        assert!(out.contains("self . client . unary :: < HelloRequest , HelloReply > (Self :: SAY_HELLO , & req , options . idempotent (true))"), "{out}");
        assert!(
            out.contains("(Self :: COUNT_TO , & req , options)"),
            "{out}"
        );
        assert!(out.contains(r#"name : :: std :: borrow :: ToOwned :: to_owned (Self :: SERVICE_NAME) , doc : :: std :: borrow :: ToOwned :: to_owned ("Greets.\n\nPolitely.")"#), "{out}");
        let method = |name: &str,
                      path: &str,
                      kind: &str,
                      idem: bool,
                      doc: &str,
                      req: &str,
                      resp: &str| {
            format!(
                ":: knafeh :: schema :: MethodSchema {{ name : :: std :: borrow :: ToOwned :: to_owned (\"{name}\") , \
                 path : :: std :: borrow :: ToOwned :: to_owned (Self :: {path}) , \
                 kind : :: knafeh :: schema :: CallKind :: {kind} , idempotent : {idem} , \
                 doc : :: std :: borrow :: ToOwned :: to_owned (\"{doc}\") , \
                 request : < {req} as :: knafeh :: __private :: Message > :: trace_schema (& mut tracer) ? , \
                 response : < {resp} as :: knafeh :: __private :: Message > :: trace_schema (& mut tracer) ? , }}"
            )
        };
        for m in [
            method(
                "say_hello",
                "SAY_HELLO",
                "Unary",
                true,
                "Unary.",
                "HelloRequest",
                "HelloReply",
            ),
            method(
                "count_to",
                "COUNT_TO",
                "ServerStreaming",
                false,
                "",
                "CountRequest",
                "Count",
            ),
            method(
                "add_up",
                "ADD_UP",
                "ClientStreaming",
                false,
                "",
                "Count",
                "Total",
            ),
            method("chat", "CHAT", "BidiStreaming", false, "", "Hello", "Reply"),
        ] {
            assert!(out.contains(&m), "{m}\n{out}");
        }
        // The server's Service impl answers with the client's schema.
        assert!(out.contains("fn schema (& self ,) -> :: core :: result :: Result < :: knafeh :: schema :: ServiceSchema , :: knafeh :: schema :: SchemaError , > { GreeterClient :: schema () }"), "{out}");
        // The attribute is the macro's: it does not reach the trait.
        assert!(!out.contains("# [knafeh"), "{out}");
        assert!(
            out.contains(r#"# [doc = r" Unary."] fn say_hello"#),
            "{out}"
        );
    }

    #[test]
    fn on_error_the_passed_through_trait_loses_the_method_options() {
        let out = expand(
            quote!(),
            quote!(
                trait T {
                    #[knafeh(idempotnt)]
                    async fn m(&self, r: R) -> Result<X, Status>;
                }
            ),
        );
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
        assert!(out.contains("unknown method option `idempotnt`"), "{out}");
        assert!(!out.contains("# [knafeh"), "{out}");
        assert!(out.contains("async fn m (& self , r : R)"), "{out}");
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
        assert!(out.contains("match method { _ => :: core :: option :: Option :: None , }"));
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
        let item: syn::ItemTrait = syn::parse_quote! {
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
