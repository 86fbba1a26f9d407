use knafeh::__private::{self, Call, Reply, Service};
use knafeh::{CallOptions, Client, DevCert, Server, Status, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Hello {
    name: String,
}

struct Svc;
impl Service for Svc {
    fn name(&self) -> &'static str {
        "t.Svc"
    }
    fn has_method(&self, m: &str) -> bool {
        m == "hi" || m == "many"
    }
    fn call(&self, m: &str, call: Call) -> __private::BoxFuture<Result<Reply, Status>> {
        match m {
            "hi" => __private::unary("/t.Svc/hi", call, |r: Hello, _ctx| async move {
                Ok(Hello {
                    name: format!("Hello, {}!", r.name),
                })
            }),
            _ => __private::server_streaming("/t.Svc/many", call, |r: Hello, _ctx| async move {
                Ok(Streaming::iter((0..3).map(move |i| Hello {
                    name: format!("{}{i}", r.name),
                })))
            }),
        }
    }
}

#[tokio::test]
async fn smoke() {
    let dir = std::env::temp_dir().join(format!("knafeh-smoke-{}", std::process::id()));
    let dev = DevCert::generate(&["localhost", "127.0.0.1"]).unwrap();
    let p = dev.write_to(&dir).unwrap();
    let server = Server::builder()
        .tls(&p.cert, &p.key)
        .add_service(Svc)
        .start()
        .await
        .unwrap();
    let addr = server.local_addr();
    let client = Client::builder(addr.to_string())
        .ca_file(&p.ca)
        .connect()
        .await
        .unwrap();
    let r: knafeh::Response<Hello> = client
        .unary(
            "/t.Svc/hi",
            &Hello { name: "Ada".into() },
            CallOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.into_inner().name, "Hello, Ada!");
    let mut s: Streaming<Hello> = client
        .server_streaming(
            "/t.Svc/many",
            &Hello { name: "x".into() },
            CallOptions::new(),
        )
        .await
        .unwrap();
    let mut got = vec![];
    while let Some(m) = s.message().await {
        got.push(m.unwrap().name);
    }
    assert_eq!(got, ["x0", "x1", "x2"]);
    let e = client
        .unary::<Hello, Hello>(
            "/t.Svc/nope",
            &Hello { name: "x".into() },
            CallOptions::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), knafeh::Code::Unimplemented, "{e}");
    server.shutdown().await;
}
