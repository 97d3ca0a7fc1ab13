//! Steady traffic against the frontend: a few orders a second, each for
//! one of a handful of items, counted by outcome so `seismo demo` can say
//! what the faults did to the users.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::DemoError;

/// Items the traffic orders, in turn.
const ITEMS: [&str; 5] = ["lamp", "kettle", "chair", "rug", "clock"];

/// Orders answered so far, by outcome.
#[derive(Debug, Default)]
pub struct TrafficCounts {
    /// Orders answered 2xx.
    pub ok: AtomicU64,
    /// Orders answered otherwise, or not at all.
    pub failed: AtomicU64,
}

impl TrafficCounts {
    /// (ok, failed) now.
    pub fn snapshot(&self) -> (u64, u64) {
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

/// The traffic driver: `rate` orders a second at `frontend` (`http://host:port`).
pub struct Traffic {
    frontend: String,
    interval: Duration,
    http: reqwest::Client,
}

impl Traffic {
    /// A driver for `rate` orders a second (at least one every ten seconds).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(frontend: &str, rate: f64) -> Result<Traffic, DemoError> {
        let interval = Duration::from_secs_f64(1.0 / rate.clamp(0.1, 1000.0));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Traffic { frontend: frontend.trim_end_matches('/').to_string(), interval, http })
    }

    /// Sends orders until `stop` turns true. Each order runs on its own task,
    /// so a slowed-down frontend does not slow the arrival rate (users do
    /// not wait for each other); the ones in flight are awaited at the end.
    pub async fn run(self, counts: Arc<TrafficCounts>, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight = tokio::task::JoinSet::new();
        for n in 0usize.. {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let url = format!("{}/buy?item={}", self.frontend, ITEMS[n % ITEMS.len()]);
            let (http, counts) = (self.http.clone(), counts.clone());
            in_flight.spawn(async move {
                let ok = matches!(http.get(&url).send().await, Ok(r) if r.status().is_success());
                let counter = if ok { &counts.ok } else { &counts.failed };
                counter.fetch_add(1, Ordering::Relaxed);
            });
            while in_flight.try_join_next().is_some() {}
        }
        while in_flight.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn orders_are_counted_by_outcome_until_stopped() {
        // Every other item fails: lamp, chair, clock answer 200; kettle, rug 500.
        let app = axum::Router::new().route(
            "/buy",
            get(
                |axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    if ["kettle", "rug"].contains(&q["item"].as_str()) {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let counts = Arc::new(TrafficCounts::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let driver = tokio::spawn(Traffic::new(&url, 200.0).unwrap().run(counts.clone(), stop_rx));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while counts.snapshot().0 + counts.snapshot().1 < 10 {
            assert!(tokio::time::Instant::now() < deadline, "no traffic: {:?}", counts.snapshot());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_tx.send(true).unwrap();
        driver.await.unwrap();
        let (ok, failed) = counts.snapshot();
        assert!(ok > 0 && failed > 0, "{ok} ok, {failed} failed");
        // Orders go round the items in turn: 3 of 5 succeed, whatever the stop point.
        assert!(ok.abs_diff(failed * 3 / 2) <= 3, "{ok} ok, {failed} failed");
    }
}
