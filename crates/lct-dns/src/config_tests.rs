//! Tests of [`crate::config`]: bounds named by field, views keyed by region.
use super::*;

/// A signature lifetime past 90 days is refused at load, naming the field.
#[test]
fn a_signature_lifetime_past_90_days_is_refused_naming_the_field() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-config").unwrap();
    let path = dir.path().join("lct-dns.toml");
    let write = |lifetime: u32| {
        let text = format!(
            "records = \"zones.jsonl\"\nlisten = [\"127.0.0.1:53\"]\n[dnssec_timers]\nsignature_lifetime = {lifetime}\n"
        );
        std::fs::write(&path, text).unwrap();
    };
    for lifetime in [SIGNATURE_LIFETIME_MAX + 1, 1 << 31, u32::MAX] {
        write(lifetime);
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("dnssec_timers.signature_lifetime") && e.contains("lct-dns.toml"), "{e}");
    }
    write(SIGNATURE_LIFETIME_MAX);
    assert!(Config::load(&path).is_ok());
}

/// Writes `records` as a records file.
fn records_file(path: &Path, records: &[DnsRecord]) {
    std::fs::write(path, records_text(records)).unwrap();
}

fn records_text(records: &[DnsRecord]) -> String {
    records.iter().map(|r| lct_core::stream::to_line(r) + "\n").collect()
}

/// The A records a client at `ip` is answered for `a.zk.lct.internal`.
fn asked(served: &Served, ip: &str, public: bool) -> Vec<String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii("a.zk.lct.internal.").unwrap(), RecordType::A));
    let (answers, internal) = served.view(ip.parse().unwrap(), public);
    let reply = Message::from_vec(&answers.answer(&m.to_vec().unwrap(), internal, false).unwrap()).unwrap();
    reply.answers.iter().map(|r| r.data.to_string()).collect()
}

/// A region's client (by its mesh address) gets its region's view, the internal prefix
/// this server's own, anyone else the external one; and on a `public` listen address
/// everyone the external one, whatever the source says.
#[test]
fn views_are_chosen_by_the_askers_region_and_the_public_side_is_external_only() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-config").unwrap();
    let own = crate::zone::fixtures::zone();
    // Region b sees a.zk by its mesh address.
    let from_b: Vec<DnsRecord> =
        own.iter().map(|r| DnsRecord { data: r.data.replace("192.168.128.1", "100.64.0.1"), ..r.clone() }).collect();
    let (records, b_records) = (dir.path().join("zones.jsonl"), dir.path().join("zones-b.jsonl"));
    records_file(&records, &own);
    records_file(&b_records, &from_b);
    let path = dir.path().join("lct-dns.toml");
    let write = |public: &str, region: &str| {
        let text = format!(
            "records = {records:?}\nlisten = [\"192.168.128.53:53\", \"203.0.113.53:53\"]\n\
             internal = [\"192.168.128.0/17\"]\npublic = [{public}]\nstate = {state:?}\n{region}",
            state = dir.path().join("state"),
        );
        std::fs::write(&path, text).unwrap();
    };
    let region_b = format!(
        "[[region]]\nnetwork = \"local:b\"\nrecords = {b_records:?}\nclients = [\"100.64.0.7/32\", \"100.64.0.9\"]\n"
    );
    write("\"203.0.113.53:53\"", &region_b);
    let served = Config::load(&path).unwrap().load_served(None).unwrap();
    assert_eq!(asked(&served, "100.64.0.7", false), ["100.64.0.1"], "region b's member");
    assert_eq!(asked(&served, "100.64.0.9", false), ["100.64.0.1"], "region b's member");
    assert_eq!(asked(&served, "192.168.128.20", false), ["192.168.128.1"], "this server's own region");
    assert_eq!(asked(&served, "100.64.0.8", false), ["203.0.113.1"], "a mesh address of no region given");
    assert_eq!(asked(&served, "198.51.100.7", false), ["203.0.113.1"], "the outside");
    // Over the public side a forged source of region b's or of the private network is
    // the outside.
    for forged in ["100.64.0.7", "192.168.128.20", "::ffff:100.64.0.7"] {
        assert_eq!(asked(&served, forged, true), ["203.0.113.1"], "{forged} on the public side");
    }

    // Bad input: each names its field, nothing is served.
    write("\"203.0.113.54:53\"", &region_b);
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("public: 203.0.113.54:53 is not one of the listen addresses"), "{e}");
    write("", &region_b.replace("local:b", "local"));
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("region[0].network") && e.contains("PROVIDER:REGION"), "{e}");
    write("", &region_b.replace("100.64.0.9", "100.64.0.0/33"));
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("region[0].clients"), "{e}");
    let twice = format!("{region_b}{}", region_b.replace("local:b", "local:c"));
    write("", &twice);
    let e = Config::load(&path).unwrap().load_served(None).err().unwrap().to_string();
    assert!(e.contains("local:b") && e.contains("local:c") && e.contains("overlap"), "{e}");
    let other_zone: Vec<DnsRecord> =
        from_b.iter().map(|r| DnsRecord { zone: "other.internal.".into(), ..r.clone() }).collect();
    records_file(&b_records, &other_zone);
    write("", &region_b);
    let e = Config::load(&path).unwrap().load_served(None).err().unwrap().to_string();
    assert!(e.contains("region[0].records: zone other.internal. is not one of the records file's zones"), "{e}");
}

/// A wildcard listener takes the public side's queries on the same socket as the mesh's:
/// a public asker forging region b's mesh source there would get b's view. With regions, a
/// wildcard is refused unless it is `public` (external to all); a reload cannot give the
/// wildcard socket of a running server regions either (its bound addresses are kept).
#[test]
fn a_wildcard_socket_never_serves_a_regions_view() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-config").unwrap();
    let (records, b_records) = (dir.path().join("zones.jsonl"), dir.path().join("zones-b.jsonl"));
    records_file(&records, &crate::zone::fixtures::zone());
    records_file(&b_records, &crate::zone::fixtures::zone());
    let path = dir.path().join("lct-dns.toml");
    let region_b = format!("[[region]]\nnetwork = \"local:b\"\nrecords = {b_records:?}\nclients = [\"100.64.0.7\"]\n");
    let write = |listen: &str, public: &str, region: &str| {
        let text = format!("records = {records:?}\nlisten = [{listen}]\npublic = [{public}]\n{region}");
        std::fs::write(&path, text).unwrap();
    };
    for wildcard in ["\"0.0.0.0:53\"", "\"[::]:53\""] {
        write(&format!("{wildcard}, \"203.0.113.53:53\""), "\"203.0.113.53:53\"", &region_b);
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("listen: ") && e.contains("wildcard") && e.contains("lct-dns.toml"), "{e}");
        // Named public: every asker there is the outside; regions are served elsewhere.
        write(&format!("{wildcard}, \"192.168.128.53:53\""), wildcard, &region_b);
        assert!(Config::load(&path).is_ok());
        // Without regions a wildcard stays as it was.
        write(wildcard, "", "");
        let running = Config::load(&path).unwrap();
        // A reload naming specific addresses (not bound: listen changes on restart) and
        // adding a region: refused, the wildcard socket still serves.
        write("\"192.168.128.53:53\"", "", &region_b);
        let reloaded = Config::load(&path).unwrap();
        let e = reloaded.for_reload(&running).unwrap_err();
        assert!(e.contains("wildcard"), "{e}");
        write(wildcard, "", "");
        assert!(Config::load(&path).unwrap().for_reload(&running).is_ok());
    }
}

/// Region clients by the thousand load in one sort (not pairwise), and each is found.
#[test]
fn many_region_clients_load_and_are_found() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-config").unwrap();
    let (records, b_records) = (dir.path().join("zones.jsonl"), dir.path().join("zones-b.jsonl"));
    records_file(&records, &crate::zone::fixtures::zone());
    let from_b: Vec<DnsRecord> = crate::zone::fixtures::zone()
        .iter()
        .map(|r| DnsRecord { data: r.data.replace("192.168.128.1", "100.64.0.1"), ..r.clone() })
        .collect();
    records_file(&b_records, &from_b);
    let clients: Vec<String> =
        (0..100_000u32).map(|i| format!("\"100.{}.{}.{}\"", 64 + (i >> 16), (i >> 8) & 255, i & 255)).collect();
    let path = dir.path().join("lct-dns.toml");
    let text = format!(
        "records = {records:?}\nlisten = [\"192.168.128.53:53\"]\nstate = {state:?}\n[[region]]\nnetwork = \"local:b\"\nrecords = {b_records:?}\nclients = [{}]\n",
        clients.join(", "),
        state = dir.path().join("state"),
    );
    std::fs::write(&path, text).unwrap();
    let started = std::time::Instant::now();
    let served = Config::load(&path).unwrap().load_served(None).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(asked(&served, "100.65.134.159", false), ["100.64.0.1"], "the last client");
    assert_eq!(asked(&served, "100.65.134.160", false), ["203.0.113.1"], "one past it");
}

/// `dnssec_validation` is on unless a zone says "off"; anything else is refused at load,
/// naming the file and the values it takes.
#[test]
fn dnssec_validation_is_on_by_default_and_only_on_or_off() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-config").unwrap();
    let path = dir.path().join("lct-dns.toml");
    let load = |setting: &str| {
        let text = format!(
            "records = \"zones.jsonl\"\nlisten = [\"127.0.0.1:53\"]\n[[primary]]\nzone = \"a.test\"\naddress = \"127.0.0.1:5300\"\nkey = \"k.key\"\n{setting}\n"
        );
        std::fs::write(&path, text).unwrap();
        Config::load(&path).map(|c| c.primaries[0].dnssec_validation)
    };
    assert_eq!(load("").unwrap(), OnOff::On);
    assert_eq!(load("dnssec_validation = \"on\"").unwrap(), OnOff::On);
    assert_eq!(load("dnssec_validation = \"off\"").unwrap(), OnOff::Off);
    for bad in ["dnssec_validation = \"maybe\"", "dnssec_validation = true", "dnssec_validation = \"ON \""] {
        let e = load(bad).unwrap_err().to_string();
        assert!(e.contains("lct-dns.toml") && e.contains("dnssec_validation"), "{bad}: {e}");
    }
}

/// A `ds` of a `[[primary]]` that is not a DS this server can match is refused when the
/// zones are read, naming the file, the field and the value.
#[test]
fn a_primarys_ds_is_refused_by_field_when_unreadable() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-config").unwrap();
    let path = dir.path().join("lct-dns.toml");
    let text = "records = \"zones.jsonl\"\nlisten = [\"127.0.0.1:53\"]\n[[primary]]\nzone = \"a.test\"\naddress = \"127.0.0.1:5300\"\nkey = \"k.key\"\nds = [\"60485 13 1 ABCD\"]\n";
    std::fs::write(&path, text).unwrap();
    let e = Config::load(&path).unwrap().primaries().unwrap_err().to_string();
    assert!(e.contains("lct-dns.toml") && e.contains("primary[0].ds[0]") && e.contains("digest type 1"), "{e}");
}
