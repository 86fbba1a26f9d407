//! TLS: the server's name is checked (DNS and IP), and mutual TLS lets in
//! only clients with a certificate from the configured CA.

use knafeh::{Client, Code, DevCert, Server};
use knafeh_tests::{bounded, start_probe_server, Certs, Echo, ProbeClient, TempDir};

/// Makes one call on a fresh client built by `build`; `Ok` with the
/// answer or the status of whichever step failed (dial or call).
async fn call(build: knafeh::ClientBuilder) -> Result<String, knafeh::Status> {
    let client: Client = build.connect().await?;
    let probe = ProbeClient::new(client);
    Ok(probe.echo(Echo { text: "hi".into() }).await?.text)
}

#[tokio::test]
async fn a_certificate_without_the_servers_ip_is_refused() {
    bounded(async {
        // A certificate for the DNS name only, served on 127.0.0.1.
        let dir = TempDir::new();
        let dev = DevCert::generate(&["localhost"]).unwrap();
        let paths = dev.write_to(&dir.0).unwrap();
        let certs = Certs {
            dev,
            paths: paths.clone(),
            dir,
        };
        let (server, _state) = start_probe_server(&certs, |b| b).await;
        let port = server.local_addr().port();

        // The client refuses it at once and says why (not a handshake
        // timeout).
        let by_ip = call(
            Client::builder(format!("127.0.0.1:{port}"))
                .ca_file(&paths.ca)
                .connect_timeout(std::time::Duration::from_secs(120)),
        )
        .await;
        let err = by_ip.expect_err("a certificate without the IP SAN was accepted");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message()
                .contains("certificate is not valid for 127.0.0.1"),
            "{err}"
        );
        // A CA the server's certificate does not come from.
        let other = Certs::new();
        let err = call(
            other
                .client_builder(format!("127.0.0.1:{port}"))
                .server_name("localhost")
                .connect_timeout(std::time::Duration::from_secs(120)),
        )
        .await
        .expect_err("a certificate from an unknown CA was accepted");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message().contains("certificate is not trusted"),
            "{err}"
        );

        // A name the certificate does not carry: refused, naming it.
        let err = call(
            Client::builder(format!("127.0.0.1:{port}"))
                .ca_file(&paths.ca)
                .server_name("other.example")
                .connect_timeout(std::time::Duration::from_secs(120)),
        )
        .await
        .expect_err("a certificate for another name was accepted");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message()
                .contains("certificate is not valid for other.example"),
            "{err}"
        );
        let by_name = call(
            Client::builder(format!("127.0.0.1:{port}"))
                .ca_file(&paths.ca)
                .server_name("localhost"),
        )
        .await;
        assert_eq!(by_name.unwrap(), "hi");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    bounded(async {
        let certs = Certs::new();
        let client_ca = DevCert::generate(&["clients"]).unwrap();
        let client_ca_paths = client_ca.write_to(&certs.dir.0.join("client-ca")).unwrap();
        let (server, _state) =
            start_probe_server(&certs, |b| b.client_ca(&client_ca_paths.ca)).await;
        let addr = server.local_addr().to_string();

        let write = |name: &str, issued: knafeh::IssuedCert| {
            let cert = certs.dir.0.join(format!("{name}.pem"));
            let key = certs.dir.0.join(format!("{name}.key"));
            std::fs::write(&cert, issued.cert_pem).unwrap();
            std::fs::write(&key, issued.key_pem).unwrap();
            (cert, key)
        };
        let (good_cert, good_key) = write("alice", client_ca.issue_client("alice").unwrap());
        let stranger_ca = DevCert::generate(&["strangers"]).unwrap();
        let (bad_cert, bad_key) = write("mallory", stranger_ca.issue_client("mallory").unwrap());
        let base = || certs.client_builder(addr.clone());

        // No certificate.
        // The server's TLS alert reaches the caller.
        let err = call(base())
            .await
            .expect_err("a client without a certificate got in");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message()
                .contains("TLS alert 116 (certificate required"),
            "{err}"
        );
        // A certificate from another CA.
        let err = call(base().identity(&bad_cert, &bad_key))
            .await
            .expect_err("a client with a foreign certificate got in");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message()
                .contains("the peer closed the connection with TLS alert"),
            "{err}"
        );
        // The right one.
        assert_eq!(
            call(base().identity(&good_cert, &good_key)).await.unwrap(),
            "hi"
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn bad_tls_files_are_reported_before_serving_or_dialling() {
    bounded(async {
        let certs = Certs::new();
        let missing = certs.dir.0.join("missing.pem");
        // A client CA file that does not exist.
        let err = Server::builder()
            .tls(&certs.paths.cert, &certs.paths.key)
            .client_ca(&missing)
            .start()
            .await
            .expect_err("a missing client CA file was accepted");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        // A key that does not belong to the certificate.
        let other = DevCert::generate(&["localhost"]).unwrap();
        let other_paths = other.write_to(&certs.dir.0.join("other")).unwrap();
        let err = Server::builder()
            .tls(&certs.paths.cert, &other_paths.key)
            .start()
            .await
            .expect_err("a mismatched key was accepted");
        assert!(err.to_string().contains("is not the key of"), "{err}");
        // A client identity whose files are missing.
        let (server, _state) = start_probe_server(&certs, |b| b).await;
        let err = call(
            certs
                .client_builder(server.local_addr().to_string())
                .identity(&missing, &missing),
        )
        .await
        .expect_err("a missing client certificate was accepted");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("missing.pem"), "{err:?}");
        server.shutdown().await;
    })
    .await
}
