//! Runs the Linode API test double on loopback until killed (for benchmarks and hand tests).

use clap::Parser;
use lct_linode_double::{Config, Double};

/// A test double of the Linode API v4 on 127.0.0.1 (tests and benchmarks only)
#[derive(Parser)]
#[command(after_help = "\
Prints its base URL (for LINODE_URL) and serves until killed. Controls:
  GET  /_double/stats                   counts: requests, 429s, early retries, duplicates
  POST /_double/faults  {\"path\":\"/linode/instances\",\"method\":\"POST\",\"kind\":\"503\",\"count\":1,\"after\":true}
  POST /_double/advance {\"seconds\":60}
  POST /_double/seed    {\"instances\":10000}")]
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
    let double =
        Double::start_on(Config { token: args.token, speed: args.speed, backing, ..Config::realistic() }, args.port);
    println!("{}", double.url());
    loop {
        std::thread::park();
    }
}
