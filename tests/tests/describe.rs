//! The built-in `knafeh.Describe` service over loopback: `list`, the
//! schemas `describe` sends (with both codecs, and as PROTOCOL.md §12.2
//! documents them), its errors, and turning it off.

use std::collections::BTreeMap;

use greeter::{GreeterClient, GreeterServer, MyGreeter};
use knafeh::describe::{DescribeClient, DescribeRequest, ListRequest};
use knafeh::health::HealthReporter;
use knafeh::schema::{CallKind, Container, Format, ServiceSchema};
use knafeh::{Client, Code, Codec, ServerHandle, Status};
use knafeh_tests::raw::{self, RawConn, RawResponse};
use knafeh_tests::*;

async fn describe(client: &Client, service: &str) -> Result<ServiceSchema, Status> {
    DescribeClient::new(client.clone())
        .describe(DescribeRequest::new(service))
        .await
}

/// One JSON call on a raw HTTP/3 connection, as a client with only
/// PROTOCOL.md would make it.
async fn raw_json(server: &ServerHandle, path: &str, request: &str) -> RawResponse {
    let conn = RawConn::connect(server.local_addr()).await.unwrap();
    conn.open(
        raw::headers(path, "application/grpc+json"),
        raw::frame(0, request.as_bytes()),
        true,
    )
    .response()
    .await
}

fn only_message(r: &RawResponse) -> String {
    assert_eq!(r.grpc_status(), Some(0), "{r:?}");
    let messages = r.messages().expect("well-framed messages");
    assert_eq!(messages.len(), 1, "{r:?}");
    String::from_utf8(messages[0].clone()).unwrap()
}

#[tokio::test]
async fn list_names_every_service_built_ins_included_sorted() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| {
            b.add_service(GreeterServer::new(MyGreeter))
                .add_service(shapes::ShapesServer::new(shapes::Impl))
                .health(HealthReporter::new())
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        let list = DescribeClient::new(client)
            .list(ListRequest::new())
            .await
            .unwrap();
        assert_eq!(
            list.services,
            [
                "helloworld.Greeter",
                "knafeh.Describe",
                "knafeh.Health",
                "test.Shapes"
            ]
        );
        // The documented JSON, from a raw client.
        let json = only_message(&raw_json(&server, "/knafeh.Describe/list", "{}").await);
        assert_eq!(
            json,
            r#"{"services":["helloworld.Greeter","knafeh.Describe","knafeh.Health","test.Shapes"]}"#
        );
        server.shutdown().await;

        // Without health, no knafeh.Health.
        let server = start(&certs, |b| b.add_service(GreeterServer::new(MyGreeter))).await;
        let client = client_for(&certs, server.local_addr()).await;
        let list = DescribeClient::new(client)
            .list(ListRequest::new())
            .await
            .unwrap();
        assert_eq!(list.services, ["helloworld.Greeter", "knafeh.Describe"]);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn describe_sends_the_greeter_schema_with_both_codecs() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| b.add_service(GreeterServer::new(MyGreeter))).await;
        let expected = GreeterClient::schema().unwrap();
        for codec in [Codec::Bincode, Codec::Json] {
            let client = certs
                .client_builder(server.local_addr().to_string())
                .codec(codec)
                .connect()
                .await
                .unwrap();
            let schema = describe(&client, "helloworld.Greeter").await.unwrap();
            assert_eq!(schema, expected, "{codec:?}");
        }
        // What it says, checked against the trait itself.
        assert_eq!(expected.name, "helloworld.Greeter");
        assert_eq!(expected.doc, "Greets people and counts.");
        let kinds: Vec<_> = expected
            .methods
            .iter()
            .map(|m| (m.name.as_str(), m.path.as_str(), m.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("say_hello", "/helloworld.Greeter/say_hello", CallKind::Unary),
                ("count_to", "/helloworld.Greeter/count_to", CallKind::ServerStreaming),
                ("add_up", "/helloworld.Greeter/add_up", CallKind::ClientStreaming),
                ("chat", "/helloworld.Greeter/chat", CallKind::BidiStreaming),
            ]
        );
        let count = &expected.methods[1];
        assert_eq!(count.request, Format::Ref("CountRequest".into()));
        assert_eq!(count.response, Format::Ref("Count".into()), "the stream's item");
        let types: Vec<_> = expected.types.keys().map(String::as_str).collect();
        assert_eq!(
            types,
            ["Count", "CountRequest", "HelloReply", "HelloRequest", "Total"]
        );
        // And as JSON on the wire, in the documented form.
        let json = only_message(
            &raw_json(
                &server,
                "/knafeh.Describe/describe",
                r#"{"service":"helloworld.Greeter"}"#,
            )
            .await,
        );
        for part in [
            r#"{"name":"helloworld.Greeter","doc":"Greets people and counts.","methods":[{"name":"say_hello","path":"/helloworld.Greeter/say_hello","kind":"unary","idempotent":false,"#,
            r#""request":{"ref":"HelloRequest"},"response":{"ref":"HelloReply"}}"#,
            r#""kind":"bidi_streaming""#,
            r#""HelloRequest":{"struct":[{"name":"name","type":"str"}]}"#,
            r#""Total":{"struct":[{"name":"sum","type":"u64"},{"name":"count","type":"u32"}]}"#,
        ] {
            assert!(json.contains(part), "{part}\nnot in\n{json}");
        }
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn every_documented_shape_comes_back_as_protocol_md_shows_it() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| {
            b.add_service(shapes::ShapesServer::new(shapes::Impl))
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        let schema = describe(&client, "test.Shapes").await.unwrap();
        assert_eq!(schema, shapes::ShapesClient::schema().unwrap());
        let all = &schema.types["Everything"];
        let Container::Struct(fields) = all else {
            panic!("Everything is not a struct: {all:?}")
        };
        let fields: BTreeMap<_, _> = fields
            .iter()
            .map(|f| (f.name.as_str(), &f.format))
            .collect();
        assert_eq!(fields["raw"], &Format::Seq(Box::new(Format::U8)));
        assert_eq!(fields["bytes"], &Format::Bytes);

        // The JSON of each form, exactly as PROTOCOL.md §12.2 shows it.
        let json = only_message(
            &raw_json(
                &server,
                "/knafeh.Describe/describe",
                r#"{"service":"test.Shapes"}"#,
            )
            .await,
        );
        for part in shapes::DOCUMENTED {
            assert!(json.contains(part), "{part}\nnot in\n{json}");
        }
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_built_in_services_describe_themselves() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| b.health(HealthReporter::new())).await;
        let client = client_for(&certs, server.local_addr()).await;
        let d = describe(&client, "knafeh.Describe").await.unwrap();
        let names: Vec<_> = d.methods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["list", "describe"]);
        assert!(d.types.contains_key("Format"), "{:?}", d.types.keys());
        let h = describe(&client, "knafeh.Health").await.unwrap();
        assert_eq!(h.methods[1].kind, CallKind::ServerStreaming);
        let Container::Enum(variants) = &h.types["ServingStatus"] else {
            panic!("{:?}", h.types)
        };
        let names: Vec<_> = variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn an_unknown_name_is_not_found_listing_what_exists() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| b.add_service(GreeterServer::new(MyGreeter))).await;
        let client = client_for(&certs, server.local_addr()).await;
        let err = describe(&client, "helloworld.Nope").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert!(err.message().contains("\"helloworld.Nope\""), "{err:?}");
        assert!(
            err.message()
                .contains("helloworld.Greeter, knafeh.Describe"),
            "{err:?}"
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_type_that_cannot_be_described_is_internal_naming_it() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| {
            b.add_service(shapes::BrokenServer::new(shapes::Impl))
                .add_service(GreeterServer::new(MyGreeter))
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        for _ in 0..2 {
            let err = describe(&client, "test.Broken").await.unwrap_err();
            assert_eq!(err.code(), Code::Internal, "{err:?}");
            assert!(err.message().contains("cannot describe"), "{err:?}");
            assert!(err.message().contains("Loose"), "names the type: {err:?}");
        }
        // The service itself still serves (in JSON: untagged enums need a
        // self-describing format), and the others still describe.
        let json = certs
            .client_builder(server.local_addr().to_string())
            .codec(Codec::Json)
            .connect()
            .await
            .unwrap();
        let broken = shapes::BrokenClient::new(json);
        assert_eq!(broken.take(shapes::Loose::B("x".into())).await.unwrap(), 1);
        assert!(describe(&client, "helloworld.Greeter").await.is_ok());
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn turned_off_it_is_an_unknown_service() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| {
            b.add_service(GreeterServer::new(MyGreeter)).describe(false)
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        let d = DescribeClient::new(client);
        let err = d.list(ListRequest::new()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
        assert_eq!(err.message(), "unknown service knafeh.Describe");
        let err = d
            .describe(DescribeRequest::new("helloworld.Greeter"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
        // Exactly like a service that never existed.
        let r = raw_json(&server, "/knafeh.Describe/list", "{}").await;
        let other = raw_json(&server, "/knafeh.Nothing/list", "{}").await;
        assert!(r.is_trailers_only(), "{r:?}");
        assert_eq!(r.grpc_status(), other.grpc_status());
        assert_eq!(
            r.grpc_message().map(|m| m.replace("Describe", "Nothing")),
            other.grpc_message().map(str::to_owned)
        );
        // The name is free for the application's own service.
        server.shutdown().await;
        let err = certs
            .server_builder()
            .add_service(mine::DescribeServer::new(mine::Mine))
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("knafeh.Describe"), "{err}");
        let server = start(&certs, |b| {
            b.add_service(mine::DescribeServer::new(mine::Mine))
                .describe(false)
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        assert_eq!(mine::DescribeClient::new(client).list(3).await.unwrap(), 3);
        server.shutdown().await;
    })
    .await
}

mod mine {
    /// An application service that happens to be called `knafeh.Describe`.
    #[knafeh::service(package = "knafeh")]
    pub trait Describe {
        async fn list(&self, req: u32) -> Result<u32, knafeh::Status>;
    }
    pub struct Mine;
    impl Describe for Mine {
        async fn list(&self, req: u32) -> Result<u32, knafeh::Status> {
            Ok(req)
        }
    }
}

/// One type of each form PROTOCOL.md §12.2 documents.
mod shapes {
    use std::collections::BTreeMap;

    use knafeh::Status;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct Ping;

    #[derive(Serialize, Deserialize)]
    pub struct UserId(pub u64);

    #[derive(Serialize, Deserialize)]
    pub struct Labelled(pub f64, pub String);

    #[derive(Serialize, Deserialize)]
    pub struct Point {
        pub x: f64,
        pub y: f64,
    }

    #[derive(Serialize, Deserialize)]
    pub enum Shape {
        Empty,
        Circle(f64),
        Pair(u32, String),
        Rect { w: u32, h: u32 },
    }

    /// Recursive.
    #[derive(Serialize, Deserialize)]
    pub struct Tree {
        pub value: u32,
        pub children: Vec<Tree>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Everything {
        pub unit: (),
        pub flag: bool,
        pub small: i8,
        pub wide: i128,
        pub byte: u8,
        pub count: u32,
        pub huge: u128,
        pub ratio: f32,
        pub real: f64,
        pub letter: char,
        pub text: String,
        #[serde(with = "knafeh::as_bytes")]
        pub bytes: Vec<u8>,
        pub raw: Vec<u8>,
        pub maybe: Option<String>,
        pub totals: BTreeMap<String, u64>,
        pub tuple: (String, u32),
        pub array: [u8; 4],
        pub pair: (u32, u32),
        pub nested: Option<Vec<Point>>,
        pub ping: Ping,
        pub id: UserId,
        pub labelled: Labelled,
        pub shape: Shape,
        pub tree: Tree,
    }

    /// JSON fragments of the describe answer, each as PROTOCOL.md §12.2
    /// shows it.
    pub const DOCUMENTED: &[&str] = &[
        r#"{"name":"unit","type":"unit"}"#,
        r#"{"name":"flag","type":"bool"}"#,
        r#"{"name":"small","type":"i8"}"#,
        r#"{"name":"wide","type":"i128"}"#,
        r#"{"name":"huge","type":"u128"}"#,
        r#"{"name":"ratio","type":"f32"}"#,
        r#"{"name":"letter","type":"char"}"#,
        r#"{"name":"text","type":"str"}"#,
        r#"{"name":"bytes","type":"bytes"}"#,
        r#"{"name":"raw","type":{"seq":"u8"}}"#,
        r#"{"name":"maybe","type":{"option":"str"}}"#,
        r#"{"name":"totals","type":{"map":{"key":"str","value":"u64"}}}"#,
        r#"{"name":"tuple","type":{"tuple":["str","u32"]}}"#,
        r#"{"name":"array","type":{"array":{"item":"u8","len":4}}}"#,
        r#"{"name":"pair","type":{"array":{"item":"u32","len":2}}}"#,
        r#"{"name":"nested","type":{"option":{"seq":{"ref":"Point"}}}}"#,
        r#"{"name":"ping","type":{"ref":"Ping"}}"#,
        r#""Ping":"unit_struct""#,
        r#""UserId":{"newtype":"u64"}"#,
        r#""Labelled":{"tuple_struct":["f64","str"]}"#,
        r#""Point":{"struct":[{"name":"x","type":"f64"},{"name":"y","type":"f64"}]}"#,
        r#""Shape":{"enum":[{"name":"Empty","shape":"unit"},{"name":"Circle","shape":{"newtype":"f64"}},{"name":"Pair","shape":{"tuple":["u32","str"]}},{"name":"Rect","shape":{"struct":[{"name":"w","type":"u32"},{"name":"h","type":"u32"}]}}]}"#,
        r#""Tree":{"struct":[{"name":"value","type":"u32"},{"name":"children","type":{"seq":{"ref":"Tree"}}}]}"#,
    ];

    /// Not describable: untagged.
    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum Loose {
        A(u32),
        B(String),
    }

    #[knafeh::service(package = "test")]
    pub trait Shapes {
        /// Takes one of everything.
        async fn all(&self, req: Everything) -> Result<Shape, Status>;
    }

    #[knafeh::service(package = "test")]
    pub trait Broken {
        async fn take(&self, req: Loose) -> Result<u32, Status>;
    }

    pub struct Impl;

    impl Shapes for Impl {
        async fn all(&self, req: Everything) -> Result<Shape, Status> {
            Ok(req.shape)
        }
    }

    impl Broken for Impl {
        async fn take(&self, req: Loose) -> Result<u32, Status> {
            Ok(match req {
                Loose::A(_) => 0,
                Loose::B(_) => 1,
            })
        }
    }
}
