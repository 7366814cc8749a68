//! The pool against a real HTTP/1.1 server on 127.0.0.1 that answers each
//! request as a test scripts it and counts the connections it accepts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{Method, Request};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::Pool;
use crate::http::{body_stream, read_body};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What the server does with a request.
#[derive(Clone, Copy)]
enum Answer {
    /// Writes these bytes and waits for the next request.
    KeepOpen(&'static str),
    /// Writes these bytes and closes the connection, with no
    /// `connection: close` to warn of it.
    ThenClose(&'static str),
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
/// A chunked stream whose last chunk arrives with its only data chunk.
const WHOLE_STREAM: &str =
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
/// A chunked stream that sends one chunk and then nothing more.
const STALLED_STREAM: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";

struct Upstream {
    port: u16,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    /// Serves every request with `answer`.
    async fn start(answer: Answer) -> Result<Self, std::io::Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, answer, log.clone()));
            }
        });
        Ok(Self {
            port,
            accepted,
            heads,
        })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn request(&self) -> Request<Bytes> {
        let mut request = Request::new(Bytes::from_static(b"{}"));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = format!("http://127.0.0.1:{}/v1/chat/completions", self.port)
            .parse()
            .unwrap_or_default();
        request
    }
}

/// Reads requests (head, then a `content-length` body) and answers each.
async fn serve(mut stream: TcpStream, answer: Answer, heads: Arc<Mutex<Vec<String>>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(end) = read_head(&mut stream, &mut buffer).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        let length = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buffer.len() < end + length {
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        }
        buffer.drain(..end + length);
        if let Ok(mut heads) = heads.lock() {
            heads.push(head);
        }
        match answer {
            Answer::KeepOpen(bytes) => {
                if stream.write_all(bytes.as_bytes()).await.is_err() {
                    return;
                }
            }
            Answer::ThenClose(bytes) => {
                let _ = stream.write_all(bytes.as_bytes()).await;
                return;
            }
        }
    }
}

/// The length of the head (through its blank line) at the start of `buffer`.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            return Some(at + 4);
        }
        if !read_more(stream, buffer).await {
            return None;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0_u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(read) => {
            buffer.extend_from_slice(&chunk[..read]);
            true
        }
    }
}

fn pool() -> Arc<Pool> {
    Arc::new(Pool::new(super::super::connector(Duration::from_secs(5))))
}

async fn read_whole(pool: &Arc<Pool>, upstream: &Upstream) -> Result<Bytes, String> {
    let response = pool
        .clone()
        .send(upstream.request(), Default::default())
        .await
        .map_err(|error| error.detail)?;
    read_body(response, 1 << 20)
        .await
        .map_err(|error| format!("{error:?}"))
}

/// Sends a request and reads the first frame of its body, which is
/// dropped with the rest unread.
async fn first_frame(
    pool: &Arc<Pool>,
    upstream: &Upstream,
) -> Result<Bytes, Box<dyn std::error::Error>> {
    let response = pool
        .clone()
        .send(upstream.request(), Default::default())
        .await
        .map_err(|error| error.detail)?;
    let mut frames = Box::pin(body_stream(response));
    Ok(frames.next().await.ok_or("no frame")??)
}

/// Three requests at once, each read whole.
async fn three_at_once(pool: &Arc<Pool>, upstream: &Upstream) -> TestResult {
    let (a, b, c) = tokio::join!(
        read_whole(pool, upstream),
        read_whole(pool, upstream),
        read_whole(pool, upstream)
    );
    for body in [a?, b?, c?] {
        assert_eq!(body, "ok");
    }
    Ok(())
}

/// Lets `idle` pass on tokio's clock.
async fn idle_for(idle: Duration) {
    tokio::time::pause();
    tokio::time::advance(idle).await;
    tokio::time::resume();
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection_in_origin_form() -> TestResult {
    let upstream = Upstream::start(Answer::KeepOpen(OK)).await?;
    let pool = pool();
    for _ in 0..3 {
        assert_eq!(read_whole(&pool, &upstream).await?, "ok");
    }
    assert_eq!(upstream.accepted(), 1);
    let heads = upstream.heads.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(heads.len(), 3);
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with("post /v1/chat/completions http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nhost: 127.0.0.1:{}\r\n", upstream.port)),
        "{head}"
    );
    Ok(())
}

#[tokio::test]
async fn a_stream_dropped_after_its_last_event_keeps_its_connection() -> TestResult {
    let upstream = Upstream::start(Answer::KeepOpen(WHOLE_STREAM)).await?;
    let pool = pool();
    for _ in 0..2 {
        // Dropped before the body's own end, which has been read already.
        assert_eq!(first_frame(&pool, &upstream).await?, "hello");
    }
    assert_eq!(upstream.accepted(), 1);
    Ok(())
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() -> TestResult {
    let upstream = Upstream::start(Answer::KeepOpen(STALLED_STREAM)).await?;
    let pool = pool();
    for round in 1..=2 {
        assert_eq!(first_frame(&pool, &upstream).await?, "hello");
        assert_eq!(upstream.accepted(), round);
    }
    Ok(())
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced_without_an_error() -> TestResult {
    let upstream = Upstream::start(Answer::ThenClose(OK)).await?;
    let pool = pool();
    for round in 1..=3 {
        assert_eq!(read_whole(&pool, &upstream).await?, "ok");
        assert_eq!(upstream.accepted(), round);
    }
    Ok(())
}

#[tokio::test]
async fn a_connection_idle_past_the_idle_timeout_is_replaced() -> TestResult {
    let upstream = Upstream::start(Answer::KeepOpen(OK)).await?;
    let pool = pool();
    read_whole(&pool, &upstream).await?;
    idle_for(super::IDLE_TIMEOUT - Duration::from_secs(1)).await;
    read_whole(&pool, &upstream).await?;
    assert_eq!(upstream.accepted(), 1, "reused within the timeout");
    idle_for(super::IDLE_TIMEOUT + Duration::from_secs(1)).await;
    read_whole(&pool, &upstream).await?;
    assert_eq!(upstream.accepted(), 2, "replaced after it");
    Ok(())
}

#[tokio::test]
async fn the_idle_connections_kept_are_bounded() -> TestResult {
    let upstream = Upstream::start(Answer::KeepOpen(OK)).await?;
    let mut bounded = Pool::new(super::super::connector(Duration::from_secs(5)));
    bounded.max_idle = 2;
    let pool = Arc::new(bounded);
    // Three at once: three connections, of which two are kept.
    three_at_once(&pool, &upstream).await?;
    assert_eq!(upstream.accepted(), 3);
    assert_eq!(pool.lock_idle().len(), 2);
    three_at_once(&pool, &upstream).await?;
    assert_eq!(upstream.accepted(), 4, "two reused, one new");
    Ok(())
}

#[tokio::test]
async fn a_connection_is_not_reused_after_an_answer_that_forbids_it() -> TestResult {
    let answers = [
        // Said so.
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        // Sent more than its length: what follows was never asked for.
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
        // A length beside a transfer coding.
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ];
    for answer in answers {
        let upstream = Upstream::start(Answer::KeepOpen(answer)).await?;
        let pool = pool();
        for round in 1..=2 {
            assert_eq!(read_whole(&pool, &upstream).await?, "ok", "{answer:?}");
            assert_eq!(upstream.accepted(), round, "{answer:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_body_without_a_length_ends_when_the_upstream_closes() -> TestResult {
    let upstream =
        Upstream::start(Answer::ThenClose("HTTP/1.1 200 OK\r\n\r\nthe whole answer")).await?;
    let pool = pool();
    assert_eq!(read_whole(&pool, &upstream).await?, "the whole answer");
    let cut = Upstream::start(Answer::ThenClose(
        "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\ncut",
    ))
    .await?;
    let error = read_whole(&pool, &cut)
        .await
        .err()
        .ok_or("a cut body was read whole")?;
    assert!(error.contains("Closed"), "{error}");
    Ok(())
}
