//! Boot, shutdown and reboot of a backed instance, answered at once as Linode's are (they
//! are asynchronous jobs): the instance shows `booting`, `shutting_down` or `rebooting` and is
//! busy ("Linode busy.") while its machine does the work on a thread of its own; then
//! `running` or `offline` (with the machine's addresses when it was made now). A machine that
//! fails leaves the instance `offline`, the reason on the double's standard error and in the
//! instance's hidden `_backing_error`. The client polls the status, as lct does on Linode.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::backing::{Backing, with_addresses};
use crate::backing_disks::Boot;
use crate::state::State;

/// Far past any test's clock: the instance stays busy until the machine is done.
const UNTIL_DONE: f64 = f64::MAX;

/// Marks instance `id` as in `action` and starts its machine's work behind the answer.
pub(crate) fn start(
    s: &mut State,
    shared: Arc<Mutex<State>>,
    backing: Backing,
    (id, label): (u64, String),
    action: &str,
    boot: Option<Boot>,
) {
    let (during, done) = match action {
        "shutdown" => ("shutting_down", "offline"),
        "reboot" => ("rebooting", "running"),
        _ => ("booting", "running"),
    };
    let now = s.now();
    let Some(obj) = s.kind("instances").get_mut(&id) else { return };
    obj.v = obj.at(now);
    obj.v["status"] = json!(during);
    obj.timeline = vec![(UNTIL_DONE, json!({}))];
    let action = action.to_string();
    std::thread::spawn(move || {
        let outcome = work(&backing, &label, &action, boot.as_ref());
        let mut s = shared.lock().expect("not poisoned");
        let Some(obj) = s.kind("instances").get_mut(&id) else { return };
        obj.timeline.clear();
        match outcome {
            Ok(addresses) => {
                if let Some((ipv4, ipv6)) = addresses {
                    obj.v = with_addresses(obj.v.clone(), &ipv4, &ipv6);
                }
                obj.v["status"] = json!(done);
            }
            Err(e) => {
                eprintln!("lct-linode-double: {action} of {label}: the backing machine: {e}");
                obj.v["status"] = json!("offline");
                obj.v["_backing_error"] = json!(e);
            }
        }
    });
}

/// The machine's side of a power action; its addresses when it was made now.
fn work(b: &Backing, label: &str, action: &str, boot: Option<&Boot>) -> Result<Option<(Vec<String>, String)>, String> {
    match boot {
        // A profile booting a disk made from an image or raw disks: the machine made, its
        // root switched or its disks attached.
        Some(boot)
            if action != "shutdown" && (boot.user_data.is_some() || boot.root.is_some() || !boot.raw.is_empty()) =>
        {
            if action == "reboot" {
                b.power(label, "shutdown")?;
            }
            b.boot(label, boot)
        }
        _ => b.power(label, action).map(|()| None),
    }
}
