//! Delivering queued alert notifications to webhooks.
//!
//! Detection never waits for this: a drift check only queues a notification row in its own
//! transaction (the outbox). This crate sends what is queued, as a JSON `POST` to every
//! webhook of the alert's model version, with a timeout per request, and records each attempt
//! in the audit trail. Failed notifications stay queued and are retried by the next delivery
//! run until `max_attempts`. Delivery is at-least-once: a notification that reached one of
//! several webhooks is sent to all of them again on retry. URLs are never logged (they often
//! carry tokens); errors are reduced to a status code or an error kind.

use std::time::Duration;
use vigil_core::Result;
use vigil_core::registry::Registry;

/// What a delivery run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    /// Notifications delivered to every webhook.
    pub delivered: usize,
    /// Notifications with at least one failed webhook (left queued for a retry).
    pub failed: usize,
    /// Notifications of versions without webhooks (recorded in the audit trail only).
    pub audit_only: usize,
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> std::result::Result<(), String> {
    match agent.post(url).header("content-type", "application/json").header("user-agent", "vigil-alerts").send(body) {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("http status {}", resp.status().as_u16())),
        Err(ureq::Error::StatusCode(code)) => Err(format!("http status {code}")),
        Err(ureq::Error::Timeout(_)) => Err("timeout".into()),
        Err(ureq::Error::Io(e)) => Err(format!("io error: {:?}", e.kind())),
        Err(_) => Err("request failed".into()),
    }
}

/// Sends queued notifications (at most `limit`), each request bounded by `timeout`.
pub fn deliver_pending(reg: &Registry, timeout: Duration, max_attempts: i64, limit: i64) -> Result<DeliveryReport> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
    let mut report = DeliveryReport::default();
    for (id, payload, urls) in reg.pending_notifications(max_attempts, limit)? {
        if urls.is_empty() {
            reg.record_delivery(&id, true, Some("no webhooks configured; recorded in the audit trail only"))?;
            report.audit_only += 1;
            continue;
        }
        let errors: Vec<String> = urls.iter().filter_map(|u| post(&agent, u, &payload).err()).collect();
        if errors.is_empty() {
            reg.record_delivery(&id, true, None)?;
            report.delivered += 1;
        } else {
            reg.record_delivery(&id, false, Some(&format!("{} of {} webhooks failed: {}", errors.len(), urls.len(), errors.join("; "))))?;
            report.failed += 1;
        }
    }
    Ok(report)
}
