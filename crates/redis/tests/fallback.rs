//! Redis going away and coming back: calls fail over to the local fallback
//! bucket (the limit divided by the expected instances) within the call
//! timeout, the link reports down, and once Redis answers again the shared
//! bucket is used by itself. Real time, bounded waits (timeouts are real).

use std::time::Duration;

use keel_redis::testing::RedisServer;
use keel_redis::{BucketClock, RedisBucket, RedisLink};
use keel_resilience::RateLimit;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MINUTE: Duration = Duration::from_secs(60);

async fn takes(bucket: &RedisBucket, tries: usize) -> usize {
    let mut took = 0;
    for _ in 0..tries {
        if bucket.take(1.0).await.is_ok() {
            took += 1;
        }
    }
    took
}

#[tokio::test]
async fn a_dead_redis_falls_back_to_local_limits_and_recovers_by_itself() -> TestResult {
    let mut server = RedisServer::start()?;
    let link = RedisLink::connect(&server.url(), Some(Duration::from_millis(100)))?;
    // 10 per minute shared by two instances: 5 each while Redis is away.
    let bucket = RedisBucket::new(
        link.clone(),
        "fallback".into(),
        10,
        MINUTE,
        5,
        BucketClock::Server,
    );
    assert_eq!(takes(&bucket, 3).await, 3);
    assert!(link.is_up());

    server.stop();
    let started = tokio::time::Instant::now();
    assert_eq!(
        takes(&bucket, 20).await,
        5,
        "the local fallback holds 10 / 2"
    );
    assert!(!link.is_up(), "still up after failing calls");
    // Three failed calls, each bounded by the timeout, then none at all.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    server.restart()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !link.is_up() {
        assert!(tokio::time::Instant::now() < deadline, "never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted Redis is empty: a full shared bucket again.
    assert_eq!(takes(&bucket, 20).await, 10);
    Ok(())
}

#[tokio::test]
async fn two_buckets_on_one_key_share_one_limit() -> TestResult {
    let server = RedisServer::start()?;
    let one = RedisLink::connect(&server.url(), Some(Duration::from_millis(100)))?;
    let two = RedisLink::connect(&server.url(), Some(Duration::from_millis(100)))?;
    let first = RedisBucket::new(one, "shared".into(), 10, MINUTE, 5, BucketClock::Server);
    let second = RedisBucket::new(two, "shared".into(), 10, MINUTE, 5, BucketClock::Server);
    let mut took = 0;
    for _ in 0..10 {
        took += takes(&first, 1).await + takes(&second, 1).await;
    }
    assert_eq!(took, 10, "two instances got more than the shared 10");
    // A 429 seen by one pauses both.
    first.drain_and_pause(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let wait = second
        .take(1.0)
        .await
        .err()
        .ok_or("the other instance took during the pause")?;
    assert!(wait > Duration::from_secs(25), "{wait:?}");
    Ok(())
}

/// Calls of the script so far, from the server's own statistics.
fn script_calls(url: &str) -> Result<u64, Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("redis://");
    let mut connection = std::net::TcpStream::connect(address)?;
    connection.write_all(b"INFO commandstats\r\n")?;
    connection.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reply = vec![0; 65536];
    let read = connection.read(&mut reply)?;
    let text = String::from_utf8_lossy(&reply[..read]);
    let calls = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(calls("evalsha") + calls("eval"))
}

#[tokio::test]
async fn settlements_are_gathered_into_one_round_trip() -> TestResult {
    let server = RedisServer::start()?;
    let link = RedisLink::connect(&server.url(), Some(Duration::from_millis(100)))?;
    let bucket = RedisBucket::new(
        link,
        "gathered".into(),
        1000,
        MINUTE,
        500,
        BucketClock::Server,
    );
    assert_eq!(bucket.take(500.0).await, Ok(500.0));
    let before = script_calls(&server.url())?;
    for _ in 0..100 {
        bucket.settle(-2.0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = script_calls(&server.url())? - before;
    assert!(sent <= 2, "100 settlements took {sent} round trips");
    // All of them were applied: 500 taken, 200 given back.
    assert_eq!(bucket.take(700.0).await, Ok(700.0));
    assert!(bucket.take(10.0).await.is_err());
    Ok(())
}
