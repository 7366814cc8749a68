//! Scripted outcomes on tokio's paused clock → exact figures.

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn availability(name: &str, target: f64, window: Duration) -> Slo {
    Slo {
        name: name.to_owned(),
        model: String::from("chat"),
        sli: Sli::Availability,
        target,
        window,
    }
}

fn slos(config: &[Slo]) -> (Slos, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (Slos::new(config, metrics.clone()), metrics)
}

fn answered() -> Outcome {
    Outcome::Answered {
        first_token: Duration::from_millis(100),
    }
}

fn record(slos: &Slos, outcome: Outcome, count: usize) {
    for _ in 0..count {
        slos.record("chat", outcome);
    }
}

/// One minute of traffic: `good` answers and `bad` failures, then the
/// clock moves to the next minute.
async fn minute(slos: &Slos, good: usize, bad: usize) {
    record(slos, answered(), good);
    record(slos, Outcome::Failed, bad);
    tokio::time::advance(MINUTE).await;
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} != {expected}"
    );
}

fn only(slos: &Slos) -> Report {
    let mut reports = slos.reports();
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn sli_budget_and_burn_rates_are_exact() {
    let (slos, _) = slos(&[availability(
        "avail",
        0.999,
        30 * 86_400 * Duration::from_secs(1),
    )]);
    record(&slos, answered(), 1000);
    record(&slos, Outcome::Failed, 10);
    let report = only(&slos);
    assert_eq!(
        report.events,
        Events {
            total: 1010,
            good: 1000,
            bad: 10
        }
    );
    assert_close(report.sli.unwrap_or_default(), 1000.0 / 1010.0, "sli");
    let allowed = (1.0 - 0.999) * 1010.0;
    assert_close(report.budget.total, allowed, "budget total");
    assert_close(report.budget.spent, 10.0, "budget spent");
    assert_close(report.budget.left, allowed - 10.0, "budget left");
    assert_close(
        report.budget.left_ratio,
        (allowed - 10.0) / allowed,
        "budget left ratio",
    );
    let burn = (10.0 / 1010.0) / (1.0 - 0.999);
    for (window, rate) in BURN_WINDOWS.iter().zip(report.burn_rates) {
        assert_close(rate, burn, window.name);
    }
    // 9.9: above the ticket's 6 in both its windows, below the page's 14.4.
    assert_eq!(report.alerts, [false, true]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn nothing_counted_means_a_whole_budget_and_no_burn() {
    let (slos, _) = slos(&[availability("avail", 0.99, Duration::from_secs(86_400))]);
    let report = only(&slos);
    assert_eq!(report.events, Events::default());
    assert_eq!(report.sli, None);
    assert_eq!(report.budget.left_ratio, 1.0);
    assert_eq!(report.burn_rates, [0.0; 4]);
    assert_eq!(report.alerts, [false, false]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_page_fires_on_a_fast_burn_and_clears_when_the_short_window_recovers() {
    let (slos, _) = slos(&[availability(
        "avail",
        0.999,
        30 * 86_400 * Duration::from_secs(1),
    )]);
    for _ in 0..55 {
        minute(&slos, 100, 0).await;
    }
    for _ in 0..4 {
        minute(&slos, 50, 50).await;
    }
    // Minute 59, the fifth bad minute, not yet over.
    record(&slos, answered(), 50);
    record(&slos, Outcome::Failed, 50);
    let report = only(&slos);
    let factor = 1.0 / (1.0 - 0.999);
    assert_close(report.burn_rates[0], 250.0 / 500.0 * factor, "5m");
    assert_close(report.burn_rates[1], 250.0 / 3000.0 * factor, "30m");
    assert_close(report.burn_rates[2], 250.0 / 6000.0 * factor, "1h");
    assert_close(report.burn_rates[3], 250.0 / 6000.0 * factor, "6h");
    assert_eq!(report.alerts, [true, true], "both fire at minute 59");

    // Recovery: good minutes from minute 60 on. The 5m window still holds
    // a bad minute until minute 64.
    tokio::time::advance(MINUTE).await;
    for _ in 60..64 {
        minute(&slos, 100, 0).await;
    }
    let report = only(&slos);
    assert_close(report.burn_rates[0], 0.0, "5m at minute 64");
    assert!(report.burn_rates[2] > 14.4, "the 1h rate is still high");
    assert_eq!(
        report.alerts,
        [false, true],
        "the page clears with the short window"
    );

    // The ticket's 30m window lets go of minute 59 at minute 89.
    for _ in 64..88 {
        minute(&slos, 100, 0).await;
    }
    assert_eq!(only(&slos).alerts, [false, true], "minute 88");
    tokio::time::advance(MINUTE).await;
    assert_eq!(only(&slos).alerts, [false, false], "minute 89");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_short_burst_alone_does_not_page() {
    let (slos, _) = slos(&[availability(
        "avail",
        0.999,
        30 * 86_400 * Duration::from_secs(1),
    )]);
    for _ in 0..59 {
        minute(&slos, 1000, 0).await;
    }
    // 20 % errors for one minute: 40 × the budget's rate over 5m, but the
    // hour's 60 000 events keep the 1h rate at 3.3.
    record(&slos, answered(), 800);
    record(&slos, Outcome::Failed, 200);
    let report = only(&slos);
    assert!(report.burn_rates[0] > 14.4);
    assert!(report.burn_rates[2] < 14.4);
    assert_eq!(report.alerts, [false, false]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn events_leave_the_window_but_not_the_six_hour_burn_before_their_time() {
    let (slos, _) = slos(&[availability("avail", 0.99, Duration::from_secs(3600))]);
    record(&slos, Outcome::Failed, 10);
    tokio::time::advance(61 * MINUTE).await;
    record(&slos, answered(), 1);
    let report = only(&slos);
    assert_eq!(
        report.events,
        Events {
            total: 1,
            good: 1,
            bad: 0
        }
    );
    assert_close(report.burn_rates[3], (10.0 / 11.0) / (1.0 - 0.99), "6h");
    assert_close(report.burn_rates[2], 0.0, "1h");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_indicator_judges_outcomes_its_way() {
    let threshold = Duration::from_secs(2);
    let latency = Slo {
        name: String::from("ttft"),
        sli: Sli::FirstTokenUnder(threshold),
        ..availability("x", 0.99, Duration::from_secs(86_400))
    };
    let (slos, _) = slos(&[
        availability("avail", 0.99, Duration::from_secs(86_400)),
        latency,
    ]);
    let fast = Duration::from_secs(1);
    let slow = Duration::from_secs(3);
    for outcome in [
        Outcome::Answered { first_token: fast },
        Outcome::Answered {
            first_token: threshold,
        },
        Outcome::Answered { first_token: slow },
        Outcome::BrokenAfter { first_token: fast },
        Outcome::Failed,
        Outcome::Refused,
    ] {
        slos.record("chat", outcome);
    }
    slos.record("another-model", Outcome::Failed);
    let reports = slos.reports();
    // Available: the three answers and the refusal; not: the broken stream
    // and the failure.
    assert_eq!(
        reports[0].events,
        Events {
            total: 6,
            good: 4,
            bad: 2
        }
    );
    // In time: fast, at the threshold, and the broken stream's first token;
    // late: the slow one and the failure; the refusal is no latency event.
    assert_eq!(
        reports[1].events,
        Events {
            total: 5,
            good: 3,
            bad: 2
        }
    );
    assert_eq!(reports[1].indicator, Indicator::FirstTokenUnder(threshold));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gauges_and_counters_carry_the_same_figures() {
    let (slos, metrics) = slos(&[availability("avail", 0.999, Duration::from_secs(86_400))]);
    record(&slos, answered(), 90);
    record(&slos, Outcome::Failed, 10);
    slos.export_gauges();
    let text = metrics.encode();
    for line in [
        r#"keel_slo_events_total{slo="avail",model="chat",result="good"} 90"#,
        r#"keel_slo_events_total{slo="avail",model="chat",result="bad"} 10"#,
        r#"keel_slo_objective{slo="avail",model="chat"} 0.999"#,
        r#"keel_slo_sli{slo="avail",model="chat"} 0.9"#,
        r#"keel_slo_alert_firing{slo="avail",model="chat",alert="page"} 1"#,
        r#"keel_slo_alert_firing{slo="avail",model="chat",alert="ticket"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let burn = (10.0_f64 / 100.0) / (1.0 - 0.999);
    let prefix = r#"keel_slo_burn_rate{slo="avail",model="chat",window="1h"} "#;
    let exported = text
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.parse::<f64>().ok());
    assert_close(exported.unwrap_or_default(), burn, "exported 1h burn rate");
}
