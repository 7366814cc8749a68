//! One suite, two stores: the in-process `TokenBucket` and the bucket kept
//! in Redis (its Lua script, against a real `redis-server` of the test's
//! own) must behave the same — reserve, refill, settle, refund, debt,
//! pause — on tokio's paused clock (the Redis bucket is given the test's
//! clock in place of the server's).

use std::sync::Arc;
use std::time::Duration;

use keel_redis::testing::RedisServer;
use keel_redis::{take_both, BucketClock, RateBucket, RedisBucket, RedisLink};
use keel_resilience::{RateLimit, TokenBucket};
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MINUTE: Duration = Duration::from_secs(60);

/// Builds a bucket of `capacity` per minute in one of the two stores.
trait Store {
    type Bucket: RateLimit;
    fn bucket(&self, capacity: u64) -> Self::Bucket;
    /// The same, as the router and the server hold it.
    fn rate_bucket(&self, capacity: u64) -> RateBucket;
}

struct Local;

struct Redis {
    _server: RedisServer,
    link: Arc<RedisLink>,
    origin: Instant,
}

impl Store for Local {
    type Bucket = TokenBucket;
    fn bucket(&self, capacity: u64) -> TokenBucket {
        TokenBucket::new(capacity, MINUTE)
    }
    fn rate_bucket(&self, capacity: u64) -> RateBucket {
        RateBucket::Local(self.bucket(capacity))
    }
}

impl Store for Redis {
    type Bucket = RedisBucket;
    fn bucket(&self, capacity: u64) -> RedisBucket {
        let key = format!("test:{}", fastrand_key());
        RedisBucket::new(
            self.link.clone(),
            key,
            capacity,
            MINUTE,
            1,
            BucketClock::Tokio(self.origin),
        )
    }
    fn rate_bucket(&self, capacity: u64) -> RateBucket {
        RateBucket::Shared(self.bucket(capacity))
    }
}

fn fastrand_key() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos()),
    );
    hasher.finish()
}

/// A server of the test's own, with the link connected and the script
/// loaded: a first call connects and loads the script in several round
/// trips, and a call sent off in the background (a pause) could then be
/// overtaken by the next one.
async fn redis() -> Result<Redis, Box<dyn std::error::Error>> {
    let server = RedisServer::start()?;
    // No timeout: a timer would let the paused clock jump past a reply.
    let link = RedisLink::connect(&server.url(), None)?;
    let redis = Redis {
        _server: server,
        link,
        origin: Instant::now(),
    };
    redis
        .bucket(1)
        .take(0.0)
        .await
        .map_err(|wait| format!("a free take waited {wait:?}"))?;
    if redis.link.fallbacks() > 0 {
        return Err("the first call to the test's Redis failed".into());
    }
    Ok(redis)
}

/// Lets a pause sent off in the background reach the store before the
/// next call (calls share one connection, so once sent they stay in
/// order).
async fn sent() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Lets settlements, gathered for a few milliseconds before they are sent,
/// reach the store.
async fn settled() {
    tokio::time::sleep(Duration::from_millis(50)).await;
    sent().await;
}

/// The tokens now, as the store says after a free take.
async fn tokens(bucket: &impl RateLimit) -> Result<u64, Box<dyn std::error::Error>> {
    bucket
        .take(0.0)
        .await
        .map_err(|wait| format!("a free take waited {wait:?}"))?;
    Ok(bucket.remaining())
}

async fn a_burst_gets_exactly_the_capacity_then_refills(store: &impl Store) -> TestResult {
    let bucket = store.bucket(10);
    for number in 0..10 {
        assert_eq!(bucket.take(1.0).await, Ok(1.0), "take {number}");
    }
    assert_eq!(
        bucket.take(1.0).await,
        Err(Duration::from_secs(6)),
        "one token comes every 6 s"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(bucket.take(1.0).await, Ok(1.0));
    assert!(bucket.take(1.0).await.is_err());
    assert_eq!(bucket.capacity(), 10);
    Ok(())
}

async fn an_oversized_take_takes_what_there_is_at_most(store: &impl Store) -> TestResult {
    let bucket = store.bucket(10);
    assert_eq!(
        bucket.take(25.0).await,
        Ok(10.0),
        "the whole bucket, and says so"
    );
    assert_eq!(bucket.take(1.0).await, Err(Duration::from_secs(6)));
    Ok(())
}

async fn settlement_charges_refunds_and_bounds_debt(store: &impl Store) -> TestResult {
    let bucket = store.bucket(100);
    assert_eq!(bucket.take(50.0).await, Ok(50.0));
    bucket.settle(30.0);
    settled().await;
    assert_eq!(tokens(&bucket).await?, 20, "charged 30 more");
    bucket.settle(-40.0);
    settled().await;
    assert_eq!(tokens(&bucket).await?, 60, "refunded 40");
    bucket.settle(1e12);
    settled().await;
    // Debt is bounded at 60 refills: an hour at 100 per minute.
    let wait = bucket
        .take(1.0)
        .await
        .err()
        .ok_or("a bucket in debt took")?;
    assert!(
        wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3601),
        "{wait:?}"
    );
    Ok(())
}

async fn a_pause_drains_and_stops_refill_until_it_ends(store: &impl Store) -> TestResult {
    let bucket = store.bucket(10);
    bucket.drain_and_pause(Duration::from_secs(5));
    sent().await;
    assert_eq!(bucket.take(1.0).await, Err(Duration::from_secs(5)));
    tokio::time::advance(Duration::from_secs(5)).await;
    // Empty when the pause ends: no refill happened during it.
    assert_eq!(bucket.take(1.0).await, Err(Duration::from_secs(6)));
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(bucket.take(1.0).await, Ok(1.0));
    Ok(())
}

async fn a_refill_never_goes_past_the_capacity(store: &impl Store) -> TestResult {
    let bucket = store.bucket(10);
    assert_eq!(bucket.take(4.0).await, Ok(4.0));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(tokens(&bucket).await?, 10);
    assert_eq!(bucket.take(11.0).await, Ok(10.0));
    Ok(())
}

async fn two_buckets_are_taken_together_or_not_at_all(store: &impl Store) -> TestResult {
    let (rpm, tpm) = (store.rate_bucket(10), store.rate_bucket(5));
    assert_eq!(take_both((&rpm, 1.0), (&tpm, 5.0)).await, Ok((1.0, 5.0)));
    // The second is empty (one token every 12 s): neither is taken from.
    assert_eq!(
        take_both((&rpm, 1.0), (&tpm, 1.0)).await,
        Err((1, Duration::from_secs(12)))
    );
    assert_eq!(tokens(&rpm).await?, 9, "the first bucket kept its token");
    // The first refusing says so, and the second is not touched.
    let (empty, full) = (store.rate_bucket(1), store.rate_bucket(3));
    assert_eq!(empty.take(1.0).await, Ok(1.0));
    assert_eq!(
        take_both((&empty, 1.0), (&full, 2.0)).await,
        Err((0, MINUTE))
    );
    assert_eq!(tokens(&full).await?, 3);
    Ok(())
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "current_thread", start_paused = true)]
                async fn $test() -> super::TestResult {
                    super::$test(&super::Local).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "current_thread", start_paused = true)]
                async fn $test() -> super::TestResult {
                    super::$test(&super::redis().await?).await
                }
            )*
        }
    };
}

suite!(
    a_burst_gets_exactly_the_capacity_then_refills,
    an_oversized_take_takes_what_there_is_at_most,
    settlement_charges_refunds_and_bounds_debt,
    a_pause_drains_and_stops_refill_until_it_ends,
    a_refill_never_goes_past_the_capacity,
    two_buckets_are_taken_together_or_not_at_all,
);
