//! Client-streaming and bidirectional calls end to end.

use greeter::{Count, GreeterClient, GreeterServer, HelloRequest, MyGreeter, Total};
use knafeh::{Code, Streaming};
use knafeh_tests::*;

#[tokio::test]
async fn greeter_add_up_and_chat() {
    bounded(async {
        let certs = Certs::new();
        let (server, client) =
            start(&certs, |b| b.add_service(GreeterServer::new(MyGreeter))).await;
        let g = GreeterClient::new(client);
        let counts = Streaming::iter((1..=4).map(|value| Count { value }));
        let total = g.add_up(counts).await.unwrap();
        assert_eq!(total, Total { sum: 10, count: 4 });
        let names = ["Ada", "Grace"].map(|n| HelloRequest { name: n.into() });
        let mut replies = g.chat(Streaming::iter(names)).await.unwrap();
        let mut got = vec![];
        while let Some(r) = replies.message().await {
            got.push(r.unwrap().message);
        }
        assert_eq!(got, ["Hello, Ada!", "Hello, Grace!"]);
        let names = ["Ada", "", "Grace"].map(|n| HelloRequest { name: n.into() });
        let mut replies = g.chat(Streaming::iter(names)).await.unwrap();
        assert_eq!(
            replies.message().await.unwrap().unwrap().message,
            "Hello, Ada!"
        );
        let err = replies.message().await.unwrap().unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::InvalidArgument, "name must not be empty")
        );
        assert!(replies.message().await.is_none());
        server.shutdown().await;
    })
    .await
}
