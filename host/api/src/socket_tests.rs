//! The server over real sockets: what is about connections (slow headers, the connection cap,
//! hyper's own answers to malformed requests) and WebSocket lifetimes.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use super::*;

struct Server {
    addr: SocketAddr,
    store: store::Store,
    /// What the bus delivers to this host's viewers (as another host's messages would arrive).
    deliveries: tokio::sync::mpsc::Sender<bus::Delivery>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(limits: HttpLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(&format!(
            "sqlite://{}",
            dir.path().join("db.sqlite").display()
        ))
        .await
        .unwrap();
        let state = crate::tests::state_for(&store, dir.path().join("hls"), limits.clone(), None);
        let (deliveries, delivered) = tokio::sync::mpsc::channel(16);
        tokio::spawn(state.viewers.clone().run(delivered));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_with_limits(listener, router(state), &limits, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            addr,
            store,
            deliveries,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Writes `request` and reads until the server closes: status, headers (lower-case) and body.
async fn exchange(socket: &mut TcpStream, request: &[u8]) -> (u16, String, Vec<u8>) {
    socket.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut buf))
        .await
        .expect("an answer within 5 s");
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> (u16, String, Vec<u8>) {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, buf[end + 4..].to_vec())
}

#[track_caller]
fn assert_json_error(head: &str, body: &[u8], code: &str) {
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    assert_eq!(v["error"]["code"], code, "{v}");
}

/// True when the server closed the socket (EOF or reset) within `within`.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut byte)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(600),
        ..HttpLimits::default()
    };
    let server = Server::start(limits).await;
    // One that sends nothing, one that trickles a header a byte at a time.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    assert!(
        closed_within(&mut slow, Duration::from_secs(2)).await,
        "trickling client kept"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(1)).await,
        "silent client kept"
    );
    // A prompt client is served as before, also on a kept-alive connection.
    let mut ok = TcpStream::connect(server.addr).await.unwrap();
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = ok.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test]
async fn connections_are_capped() {
    let limits = HttpLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..HttpLimits::default()
    };
    let server = Server::start(limits).await;
    let held_a = TcpStream::connect(server.addr).await.unwrap();
    let _held_b = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The third waits in the backlog: no answer while two are open.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut buf)).await;
    assert!(
        early.is_err(),
        "served past the cap: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // One leaves: the third is served.
    drop(held_a);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(parse_response(&buf).0, 200);
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_json_from_the_connection_layer() {
    let server = Server::start(HttpLimits::default()).await;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "h".repeat(100 * 1024)
    );
    let huge_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(70 * 1024));
    let long_uri = format!(
        "GET /api/v1/streams?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "u".repeat(20 * 1024)
    );
    for (request, status, code) in [
        (huge_header.as_bytes(), 431, "headers_too_large"),
        (huge_uri.as_bytes(), 431, "headers_too_large"),
        (long_uri.as_bytes(), 414, "uri_too_long"),
        (&b"GARBAGE\r\n\r\n"[..], 400, "bad_request"),
        (
            &b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"[..],
            400,
            "bad_request",
        ),
        (&b"GET /x HTTP/9.9\r\n\r\n"[..], 400, "bad_request"),
    ] {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        let (got, head, body) = exchange(&mut socket, request).await;
        assert_eq!(got, status, "{head}");
        assert_json_error(&head, &body, code);
        assert!(body.len() < 300, "no echo: {}", body.len());
    }
    server.stop().await;
}

/// A WebSocket handshake by hand: the status line of the answer.
async fn ws_handshake_status(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = &buf[..n];
    let end = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, text[end + 4..].to_vec())
}

async fn stream_with_detections(store: &store::Store) -> (String, String) {
    let t = store.create_tenant("a").await.unwrap();
    let key = store.create_api_key(&t.id, "t").await.unwrap();
    let (s, _) = store.create_stream(&t.id, "main").await.unwrap();
    let mut rows: Vec<store::DetectionRecord> = (0..3)
        .map(|seq| store::DetectionRecord {
            id: String::new(),
            stream_id: s.id.clone(),
            seq,
            pts_ms: seq * 33,
            wallclock: 1_700_000_000_000 + seq,
            detection: bus::Detection {
                label: "cup".into(),
                score: 0.5,
                bbox: [0.1, 0.1, 0.2, 0.2],
                component: "object-detector".into(),
            },
        })
        .collect();
    store.add_detections(&mut rows).await.unwrap();
    (s.id, key.secret)
}

#[tokio::test]
async fn since_beyond_the_frame_range_is_refused_not_replayed() {
    let server = Server::start(HttpLimits::default()).await;
    let (stream, _) = stream_with_detections(&server.store).await;
    let token = TokenKey::new(b"test-secret").issue(&stream, store::now_ms() / 1000 + 60);
    let base = format!("/api/v1/streams/{stream}/events?token={token}");
    let (status, head, body) =
        ws_handshake_status(server.addr, &format!("{base}&since=18446744073709551615")).await;
    assert_eq!(status, 400, "{head}");
    assert_json_error(&head, &body, "bad_request");
    // In range: accepted, and only frames after `since` are replayed.
    let url = format!("ws://{}{base}&since=1", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(v["seq"], 2, "{v}");
    server.stop().await;
}

/// The next text message or close frame, skipping pings.
async fn next_message(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    within: Duration,
) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(None) => return Some(Message::Close(None)),
            Ok(Some(Err(_))) => return Some(Message::Close(None)),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return Some(m),
        }
    }
}

#[tokio::test]
async fn a_websocket_closes_when_its_token_expires_unless_renewed() {
    let server = Server::start(HttpLimits::default()).await;
    let (stream, _) = stream_with_detections(&server.store).await;
    let key = TokenKey::new(b"test-secret");
    let now = store::now_ms() / 1000;

    // Not renewed: closed with 1008 once the token expires.
    let token = key.issue(&stream, now + 2);
    let url = format!(
        "ws://{}/api/v1/streams/{stream}/events?token={token}",
        server.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match next_message(&mut ws, Duration::from_secs(5)).await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert!(frame.reason.contains("expired"));
        }
        other => panic!("expected a close at expiry, got {other:?}"),
    }

    // Renewed before expiry: still open after the first token's time, until the new one's.
    let now = store::now_ms() / 1000;
    let token = key.issue(&stream, now + 2);
    let url = format!(
        "ws://{}/api/v1/streams/{stream}/events?token={token}",
        server.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Renewals that are not: a forged token, another stream's token, garbage.
    for bad in [
        serde_json::json!({"type": "renew", "token": "x.1.AAAA"}).to_string(),
        serde_json::json!({"type": "renew", "token": key.issue("str_other", now + 60)}).to_string(),
        "not json".to_string(),
    ] {
        ws.send(Message::text(bad)).await.unwrap();
        let reply = next_message(&mut ws, Duration::from_secs(2)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        assert_eq!(v["type"], "error", "{v}");
    }
    let renewed = key.issue(&stream, now + 5);
    ws.send(Message::text(
        serde_json::json!({"type": "renew", "token": renewed}).to_string(),
    ))
    .await
    .unwrap();
    let reply = next_message(&mut ws, Duration::from_secs(2)).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "renewed", "{v}");
    assert!(
        next_message(&mut ws, Duration::from_millis(3500))
            .await
            .is_none(),
        "closed although renewed"
    );
    match next_message(&mut ws, Duration::from_secs(4)).await {
        Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1008),
        other => panic!("expected a close at the renewed expiry, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_opened_with_a_key_stays_and_counts_as_a_connection() {
    let limits = HttpLimits {
        max_connections: 2,
        ..HttpLimits::default()
    };
    let server = Server::start(limits).await;
    let (stream, api_key) = stream_with_detections(&server.store).await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/api/v1/streams/{stream}/events",
            server.addr
        ))
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {api_key}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request.clone())
        .await
        .unwrap();
    let (_ws2, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // Two sockets hold both permits: a plain request waits.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut buf)).await;
    assert!(early.is_err(), "WebSockets were not counted");
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
        .await
        .expect("served once a socket closed")
        .unwrap();
    assert_eq!(parse_response(&buf).0, 200);
}

/// Opens the stream's event socket with an API key.
async fn key_socket(
    addr: SocketAddr,
    stream: &str,
    secret: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/api/v1/streams/{stream}/events"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

#[track_caller]
fn assert_closed_for_revocation(message: Option<Message>) {
    match message {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), events::KEY_REVOKED_CLOSE);
            assert!(frame.reason.contains("revoked"), "{}", frame.reason);
        }
        other => panic!("expected a close for the revoked key, got {other:?}"),
    }
}

#[tokio::test]
async fn websockets_opened_with_a_key_close_when_the_key_is_revoked_here_or_on_another_host() {
    let server = Server::start(HttpLimits::default()).await;
    let (stream, first) = stream_with_detections(&server.store).await;
    let tenant = server
        .store
        .api_key_owner(&first)
        .await
        .unwrap()
        .unwrap()
        .tenant
        .id;
    let second = server
        .store
        .create_api_key(&tenant, "second")
        .await
        .unwrap();
    let third = server.store.create_api_key(&tenant, "third").await.unwrap();
    let mut with_first = key_socket(server.addr, &stream, &first).await;
    let mut with_second = key_socket(server.addr, &stream, &second.secret).await;
    let mut with_third = key_socket(server.addr, &stream, &third.secret).await;
    let token = TokenKey::new(b"test-secret").issue(&stream, store::now_ms() / 1000 + 60);
    let (mut with_token, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/api/v1/streams/{stream}/events?token={token}",
        server.addr
    ))
    .await
    .unwrap();

    // Revoked here, through the API (with the first key): the second key's socket closes.
    let request = format!(
        "DELETE /api/v1/keys/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {first}\r\nConnection: close\r\n\r\n",
        second.id
    );
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let (status, head, _) = exchange(&mut socket, request.as_bytes()).await;
    assert_eq!(status, 204, "{head}");
    assert_closed_for_revocation(next_message(&mut with_second, Duration::from_secs(5)).await);

    // Revoked on another host: the signal comes over the bus, and the third key's socket closes.
    server.store.revoke_key(None, &third.id).await.unwrap();
    server
        .deliveries
        .send(bus::Delivery::Message(std::sync::Arc::new(
            bus::Envelope::new(
                &tenant,
                bus::Event::Control(bus::Control::KeyRevoked {
                    key: third.id.clone(),
                }),
            ),
        )))
        .await
        .unwrap();
    assert_closed_for_revocation(next_message(&mut with_third, Duration::from_secs(5)).await);

    // The sockets of the key still valid, and of a playback token, stay open and receive
    // nothing of the control signals.
    for ws in [&mut with_first, &mut with_token] {
        assert!(
            next_message(ws, Duration::from_millis(500)).await.is_none(),
            "a socket that holds a valid key or token was closed or sent a control signal"
        );
    }
    server.stop().await;
}
