//! The client's waits against the double: events found by a `created` `+gte` filter (not
//! `seen`), a new disk that is missing from its list for a moment, a volume attachment that
//! shows up late, an instance's status.

use std::time::Duration;

use lct_api::linode::api::{Linode, api_time};
use lct_api::linode::client::{Client, RetryPolicy};
use lct_api::linode::credentials::Token;
use lct_api::linode::limits::Limiter;
use lct_api::linode::types::InstanceStatus;
use lct_linode_double::{Config, Double};
use serde_json::json;

fn api(double: &Double) -> Linode {
    let retry =
        RetryPolicy { poll: Duration::from_millis(10), base: Duration::from_millis(10), ..RetryPolicy::default() };
    Linode::new(Client::new(double.url(), Token::new(double.token()), Limiter::new(), retry).unwrap())
}

#[tokio::test]
async fn events_disks_volumes_and_status() {
    // A new disk stays out of its list for a whole (real) second: time for the 404 below.
    let double = Double::start(Config { disk_hidden: 100.0, ..Config::fast() });
    let api = api(&double);
    // The double's clock runs a hundred times faster: "since" is a little in its past.
    let since = api_time(std::time::SystemTime::now() - Duration::from_secs(60));
    let body = json!({"label":"w-1","region":"us-east","type":"g6-standard-1","image":"linode/debian12","root_pass":"a-Long-pass-123"});
    let made = api.create_instance(&body).await.unwrap();
    assert_eq!(made.status, InstanceStatus::Provisioning);
    let event = api.wait_event("linode_create", made.id, &since).await.unwrap();
    assert_eq!(event.status.as_deref(), Some("finished"));
    let running = api.wait_instance(made.id, &[InstanceStatus::Running]).await.unwrap();
    assert_eq!(running.status, InstanceStatus::Running);
    // Only events at or after `since`: one from the future finds none.
    let later = api_time(std::time::SystemTime::now() + Duration::from_secs(365 * 86_400));
    assert!(api.events_since(&later, None).await.unwrap().is_empty());

    // A disk on an instance without an image: its own GET is 404 at first; the wait watches
    // the list and returns it ready.
    let bare = api.create_instance(&json!({"label":"w-2","region":"us-east","type":"g6-standard-1"})).await.unwrap();
    api.wait_instance(bare.id, &[InstanceStatus::Offline]).await.unwrap();
    let path = format!("/linode/instances/{}/disks", bare.id);
    let raw: serde_json::Value = api
        .client
        .post(&path, &json!({"label":"data","size":1024}), lct_api::linode::client::Outcome::Report)
        .await
        .unwrap();
    let disk_id = raw["id"].as_u64().unwrap();
    let early = api.client.get::<serde_json::Value>(&format!("{path}/{disk_id}")).await;
    assert!(early.is_err_and(|e| e.is_not_found()), "a new disk's GET answers 404 for a moment");
    let disk = api.wait_disk(bare.id, disk_id).await.unwrap();
    assert_eq!(disk.status, "ready");

    // A volume: active, then attached only once linode_id says so.
    let vol = api.create_volume(&json!({"label":"w-vol","size":20,"region":"us-east"})).await.unwrap();
    assert_eq!(vol.status, "active");
    let attached = api.attach_volume(vol.id, made.id).await.unwrap();
    assert_eq!(attached.linode_id, Some(made.id));
    let detached = api.detach_volume(vol.id).await.unwrap();
    assert_eq!(detached.linode_id, None);
}
