//! Runs the Linode API test double on loopback until killed (for benchmarks and hand tests).

use clap::Parser;
use lct_linode_double::{Config, Double};

/// A test double of the Linode API v4 on 127.0.0.1 (tests and benchmarks only)
#[derive(Parser)]
#[command(after_help = "\
Prints one line of the settings that point lct at it, for a shell to eval:
  export LINODE_URL=http://127.0.0.1:PORT/v4 LINODE_TOKEN=TOKEN [LCT_LINODE_SSH_NETNS=LAB-outside]
(the namespace with --backing local: its nodes' addresses are reached from there only), and
serves until killed. Controls:
  GET  /_double/stats                   counts: requests, 429s, early retries, duplicates
  GET  /_double/requests                the requests it served: method, path, body (secrets redacted)
  POST /_double/faults  {\"path\":\"/linode/instances\",\"method\":\"POST\",\"kind\":\"503\",\"count\":1,\"after\":true}
  POST /_double/advance {\"seconds\":60}
  POST /_double/seed    {\"instances\":10000}                     (foreign instances: tag seeded)
  POST /_double/seed    {\"instances\":10000,\"lct_clusters\":10}   (lct's nodes of clusters c0..c9)")]
struct Args {
    /// Port on 127.0.0.1 (0: any free one)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The token it accepts
    #[arg(long, default_value = "test-token")]
    token: String,
    /// Its clock's speed: 1 is real time (Linode's delays), 100 runs them 100 times faster
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Back each instance made from an image with a machine node of the local cloud
    /// (LCT_STATE_DIR, LCT_LAB): its addresses, its first boot from metadata.user_data
    #[arg(long, value_parser = ["local"])]
    backing: Option<String>,
}

fn main() {
    let args = Args::parse();
    let backing =
        args.backing.map(|_| lct_linode_double::backing::Backing { local: lct_api::local::LocalCloud::from_env() });
    // Where its nodes are reached from: the lab's outside namespace, which routes their
    // documentation addresses; from anywhere else lct refuses them (lct_core::reach).
    let netns = match &backing {
        Some(b) => match b.local.status() {
            Ok(status) => Some(status.outside_namespace),
            Err(e) => {
                eprintln!("lct-linode-double: the local cloud of the backing: {e}");
                std::process::exit(1);
            }
        },
        None => None,
    };
    let double =
        Double::start_on(Config { token: args.token, speed: args.speed, backing, ..Config::realistic() }, args.port);
    // One line of the settings that point lct at this double, for a shell to `eval`.
    let mut settings = format!("export LINODE_URL={} LINODE_TOKEN={}", double.url(), double.token());
    if let Some(ns) = &netns {
        settings.push_str(&format!(" {}={ns}", lct_core::reach::SSH_NETNS_VAR));
    }
    println!("{settings}");
    eprintln!("lct-linode-double: serving {}; the line on stdout sets what lct needs to use it", double.url());
    if netns.is_none() {
        eprintln!(
            "lct-linode-double: no backing: its instances' addresses (203.0.113.x) exist nowhere, and lct refuses to connect to them"
        );
    }
    loop {
        std::thread::park();
    }
}
