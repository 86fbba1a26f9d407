//! Unary and server-streaming calls end to end, with the example Greeter
//! and the probe service.

use std::sync::atomic::Ordering;
use std::time::Duration;

use greeter::{Count, CountRequest, GreeterClient, GreeterServer, HelloRequest, MyGreeter};
use knafeh::{Code, Status};
use knafeh_tests::*;

#[tokio::test]
async fn greeter_unary_and_streaming() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| b.add_service(GreeterServer::new(MyGreeter))).await;
        let client = client_for(&certs, server.local_addr()).await;
        let g = GreeterClient::new(client);
        let reply = g
            .say_hello(HelloRequest { name: "Ada".into() })
            .await
            .unwrap();
        assert_eq!(reply.message, "Hello, Ada!");
        let mut s = g.count_to(CountRequest { n: 3 }).await.unwrap();
        let mut got = vec![];
        while let Some(c) = s.message().await {
            got.push(c.unwrap());
        }
        assert_eq!(
            got,
            [Count { value: 1 }, Count { value: 2 }, Count { value: 3 }]
        );
        // Zero items.
        let mut s = g.count_to(CountRequest { n: 0 }).await.unwrap();
        assert!(s.message().await.is_none());
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn json_codec_works_end_to_end() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| b.add_service(GreeterServer::new(MyGreeter))).await;
        let client = certs
            .client_builder(server.local_addr().to_string())
            .codec(knafeh::Codec::Json)
            .connect()
            .await
            .unwrap();
        let g = GreeterClient::new(client);
        let reply = g
            .say_hello(HelloRequest {
                name: "Json".into(),
            })
            .await
            .unwrap();
        assert_eq!(reply.message, "Hello, Json!");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_codec_option_decides_the_wire_format() {
    bounded(async {
        let ProbeFixture { server, certs, .. } = ProbeFixture::start(|b| b).await;
        let client = |codec| {
            certs
                .client_builder(server.local_addr().to_string())
                .codec(codec)
                .connect()
        };
        // Only JSON can carry an untagged enum: the call succeeds with the
        // JSON codec and is refused as undecodable with bincode, so the
        // option really changes what is sent.
        let json = ProbeClient::new(client(knafeh::Codec::Json).await.unwrap());
        for v in [Loose::Number(7), Loose::Text("seven".into())] {
            assert_eq!(json.loose(v.clone()).await.unwrap(), v);
        }
        let bincode = ProbeClient::new(client(knafeh::Codec::Bincode).await.unwrap());
        let err = bincode.loose(Loose::Number(7)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains("does not decode"), "{err}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn every_status_code_arrives_intact() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        for code in Code::ALL.into_iter().filter(|c| *c != Code::Ok) {
            let message = format!("failure {code} with ünïcode, 100% and\nnewline");
            let err = p
                .fail(FailReq {
                    code: code.as_i32(),
                    message: message.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), code);
            assert_eq!(err.message(), message);
        }
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn panicking_handler_gives_internal_and_server_keeps_serving() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        let err = p
            .boom(Echo {
                text: "boom".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert!(err.message().contains("boom"), "{err}");
        let ok = p
            .boom(Echo {
                text: "fine".into(),
            })
            .await
            .unwrap();
        assert_eq!(ok.text, "fine");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn unknown_service_and_method_are_unimplemented() {
    bounded(async {
        let ProbeFixture {
            server,
            client,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        let client = client.client().clone();
        let req = Echo { text: "x".into() };
        let err = client
            .unary::<_, Echo>("/knafeh.test.Nope/echo", &req, Default::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert!(err.message().contains("knafeh.test.Nope"), "{err}");
        let err = client
            .unary::<_, Echo>("/knafeh.test.Probe/nope", &req, Default::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert!(err.message().contains("nope"), "{err}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn undecodable_request_is_invalid_argument_naming_the_method() {
    bounded(async {
        let ProbeFixture {
            server,
            client,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        let client = client.client().clone();
        // A u64 is not an `Echo` in bincode (its varint length would claim
        // a huge string); as JSON neither.
        let err = client
            .unary::<_, Echo>(ProbeClient::ECHO, &u64::MAX, Default::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("/knafeh.test.Probe/echo"), "{err}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted_both_ways() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs,
            ..
        } = ProbeFixture::start(|b| b.max_message_size(64 * 1024)).await;
        let err = p
            .blob(Blob {
                data: vec![7; 200 * 1024],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        // The connection is still good.
        let ok = p
            .blob(Blob {
                data: vec![7; 1000],
            })
            .await
            .unwrap();
        assert_eq!(ok.data.len(), 1000);

        // The client's own limit applies to responses.
        let small = certs
            .client_builder(server.local_addr().to_string())
            .max_message_size(512)
            .connect()
            .await
            .unwrap();
        let err = ProbeClient::new(small)
            .blob(Blob {
                data: vec![1; 1000],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn one_mebibyte_each_way() {
    bounded(async {
        let ProbeFixture {
            server,
            client,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        let data: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let back = client.blob(Blob { data: data.clone() }).await.unwrap();
        assert!(back.data == data);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn stream_items_arrive_as_produced() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b).await;
        let mut s = p.stream(StreamMode::Gated(3)).await.unwrap();
        for i in 1..=3 {
            state.gate.notify_one();
            let item = s.message().await.unwrap().unwrap();
            assert_eq!(item.index, i);
            // Item i arrived before item i+1 was released, so before it
            // was produced.
            assert_eq!(state.produced.load(Ordering::SeqCst), i);
        }
        assert!(s.message().await.is_none());
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn error_mid_stream_follows_the_items_before_it() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        let mut s = p
            .stream(StreamMode::FailAfter(
                2,
                Code::DataLoss.as_i32(),
                "disk on fire".into(),
            ))
            .await
            .unwrap();
        assert_eq!(s.message().await.unwrap().unwrap().index, 1);
        assert_eq!(s.message().await.unwrap().unwrap().index, 2);
        let err: Status = s.message().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::DataLoss);
        assert_eq!(err.message(), "disk on fire");
        assert!(s.message().await.is_none());
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn dropping_the_stream_stops_the_producer() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b).await;
        let mut s = p.stream(StreamMode::Endless).await.unwrap();
        for _ in 0..10 {
            s.message().await.unwrap().unwrap();
        }
        drop(s);
        let stopped = tokio::time::timeout(
            Duration::from_secs(5),
            wait_for(&state.producer_stopped_flag, &state.producer_stopped),
        )
        .await;
        assert!(
            stopped.is_ok(),
            "the producer did not observe the cancellation"
        );
        // And the connection still serves.
        assert_eq!(
            p.echo(Echo {
                text: "still".into()
            })
            .await
            .unwrap()
            .text,
            "still"
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_unary_call_cancels_its_handler() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b).await;
        // No timeout: only the drop can end the handler early.
        let call = tokio::spawn({
            let p = p.clone();
            async move { p.slow(SlowReq { millis: 60_000 }).await }
        });
        wait_for(&state.slow_started_flag, &state.slow_started).await;
        call.abort();
        let cancelled = tokio::time::timeout(
            Duration::from_secs(5),
            wait_for(&state.slow_cancelled_flag, &state.slow_cancelled),
        )
        .await;
        assert!(
            cancelled.is_ok(),
            "the handler was not cancelled when the call was dropped"
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn an_idle_producer_sees_the_client_leave() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b).await;
        let mut s = p.stream(StreamMode::OneThenWait).await.unwrap();
        assert_eq!(s.message().await.unwrap().unwrap().index, 1);
        drop(s);
        // The producer writes nothing more; it waits on `closed()`.
        let stopped = tokio::time::timeout(
            Duration::from_secs(5),
            wait_for(&state.producer_stopped_flag, &state.producer_stopped),
        )
        .await;
        assert!(stopped.is_ok(), "the producer did not see the client leave");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_client_that_does_not_read_slows_the_producer_down() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b).await;
        let mut s = p.stream(StreamMode::EndlessBlobs(64 * 1024)).await.unwrap();
        s.message().await.unwrap().unwrap();
        // Stop reading. What may pile up is bounded by the windows (server
        // send credit, QUIC stream window, client receive window: a few
        // MiB), not by time.
        // Wait until the producer has stopped (the same count for 300 ms),
        // so that a merely slow producer cannot pass; a producer that never
        // stops fails here.
        let last = tokio::time::timeout(Duration::from_secs(30), async {
            let mut last = state.produced.load(Ordering::SeqCst);
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let now = state.produced.load(Ordering::SeqCst);
                assert!(
                    now < 200,
                    "{now} items of 64 KiB produced for a client that reads nothing"
                );
                if now == last {
                    return now;
                }
                last = now;
            }
        })
        .await
        .expect("the producer never stopped for a client that reads nothing");
        assert!(
            last < 200,
            "{last} items of 64 KiB produced for a client that reads nothing"
        );
        // Reading again lets the producer go on.
        for _ in 0..(last + 50) {
            s.message().await.unwrap().unwrap();
        }
        assert!(state.produced.load(Ordering::SeqCst) > last);
        drop(s);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_deadline_ends_a_stream_after_the_items_before_it() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b).await;
        let mut s = p
            .stream_with(
                StreamMode::Gated(3),
                // Long enough for set-up and item 1 on a slow machine; item
                // 2 is never released, so only the deadline ends the stream.
                knafeh::CallOptions::new().timeout(Duration::from_secs(2)),
            )
            .await
            .unwrap();
        state.gate.notify_one();
        assert_eq!(s.message().await.unwrap().unwrap().index, 1);
        // Item 2 is never released: the deadline ends the stream.
        let err = s.message().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        assert!(s.message().await.is_none());
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_default_message_limit_is_four_mebibytes() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        // Bincode adds a few bytes of length prefix to the blob.
        let err = p
            .blob(Blob {
                data: vec![1; knafeh::DEFAULT_MAX_MESSAGE_SIZE],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        let ok = p
            .blob(Blob {
                data: vec![1; knafeh::DEFAULT_MAX_MESSAGE_SIZE - 16],
            })
            .await
            .unwrap();
        assert_eq!(ok.data.len(), knafeh::DEFAULT_MAX_MESSAGE_SIZE - 16);
        server.shutdown().await;
    })
    .await
}
