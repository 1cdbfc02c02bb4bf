//! Tests of [`crate::zone`]: views, zones for one region, clusters' names policy, bad
//! services.

use super::*;

fn node(cluster: &str, group: &str, name: &str, private: &[&str], public: &[&str]) -> Node {
    serde_json::from_value(serde_json::json!({
        "cluster": cluster, "group": group, "name": name, "provider": "local", "status": "running",
        "private_ipv4": private, "public_ipv4": public,
    }))
    .unwrap()
}

fn options() -> ZoneOptions {
    ZoneOptions {
        domain: "lct.internal".parse().unwrap(),
        parent_domain: "lct.internal".parse().unwrap(),
        ttl: 300,
        serial: 7,
        name_servers: vec![("ns1.lct.internal".into(), vec!["192.168.128.53".parse().unwrap()])],
        hostmaster: "hostmaster.lct.internal".into(),
        reverse: true,
        region: None,
        mesh: Default::default(),
    }
}

#[test]
fn views_split_private_and_public() {
    let nodes = vec![
        node("zk", "zookeeper", "zk-1", &["192.168.128.1"], &["203.0.113.1"]),
        node("zk", "zookeeper", "zk-2", &["192.168.128.2"], &[]),
    ];
    let clusters: Vec<Cluster> = vec![
        serde_json::from_str(r#"{"name":"zk","services":[{"name":"zookeeper","group":"zookeeper","port":2181}]}"#)
            .unwrap(),
    ];
    let records = zone_records(&nodes, &clusters, &options()).unwrap();
    let internal = master_file(&records, "lct.internal", View::Internal);
    let external = master_file(&records, "lct.internal", View::External);
    assert!(internal.contains("zk-1.zk\t300\tIN\tA\t192.168.128.1"), "{internal}");
    assert!(internal.contains("zookeeper.zk\t300\tIN\tA\t192.168.128.2"), "{internal}");
    assert!(internal.contains("_zookeeper._tcp.zk\t300\tIN\tSRV\t0 10 2181 zk-2.zk.lct.internal."), "{internal}");
    assert!(external.contains("zk-1.zk\t300\tIN\tA\t203.0.113.1"), "{external}");
    assert!(!external.contains("zk-2"), "no public address: no name outside: {external}");
    for line in external.lines().filter(|l| !l.contains("ns1")) {
        assert!(!line.contains("192.168."), "private address outside: {line}");
    }
    let reverse = master_file(&records, "168.192.in-addr.arpa", View::Internal);
    assert!(reverse.contains("1.128\t300\tIN\tPTR\tzk-1.zk.lct.internal."), "{reverse}");
    assert!(reverse.lines().nth(3).unwrap().contains("SOA"), "{reverse}");
}

#[test]
fn a_zone_for_one_region_names_other_regions_nodes_by_their_public_addresses() {
    // Both regions hand out 192.168.128.1.
    let mut nodes = vec![
        node("zk", "zookeeper", "zk-1", &["192.168.128.1"], &["203.0.113.1"]),
        node("zk", "zookeeper", "zk-2", &["192.168.128.1"], &["203.0.113.2"]),
        // Another provider's region of the same name is another private network.
        node("zk", "zookeeper", "zk-3", &["192.168.128.1"], &["203.0.113.3"]),
    ];
    nodes[0].region = "a".into();
    nodes[1].region = "b".into();
    (nodes[2].region, nodes[2].provider) = ("a".into(), lct_core::record::ProviderName::Linode);
    let clusters: Vec<Cluster> = vec![serde_json::from_str(r#"{"name":"zk"}"#).unwrap()];
    let from_a = ZoneOptions { region: Some("local:a".parse().unwrap()), ..options() };
    let records = zone_records(&nodes, &clusters, &from_a).unwrap();
    let internal = master_file(&records, "lct.internal", View::Internal);
    assert!(internal.contains("zk-1.zk\t300\tIN\tA\t192.168.128.1"), "{internal}");
    assert!(internal.contains("zk-2.zk\t300\tIN\tA\t203.0.113.2"), "{internal}");
    assert!(!internal.contains("zk-2.zk\t300\tIN\tA\t192.168.128.1"), "{internal}");
    assert!(internal.contains("zk-3.zk\t300\tIN\tA\t203.0.113.3"), "{internal}");
    assert!(!internal.contains("zk-3.zk\t300\tIN\tA\t192.168.128.1"), "linode's region a is not local's: {internal}");
    let reverse = master_file(&records, "168.192.in-addr.arpa", View::Internal);
    assert_eq!(reverse.matches("\tPTR\t").count(), 1, "one PTR for 192.168.128.1: region a's: {reverse}");
    assert!(reverse.contains("PTR\tzk-1.zk.lct.internal."), "{reverse}");
}

#[test]
fn a_zone_for_one_region_names_other_regions_mesh_members_by_their_mesh_addresses() {
    // Overlapping private ranges; db-3 (region b) is not in the mesh.
    let mut nodes = vec![
        node("db", "db", "db-1", &["192.168.128.1"], &["203.0.113.1"]),
        node("db", "db", "db-2", &["192.168.128.1"], &["203.0.113.2"]),
        node("db", "db", "db-3", &["192.168.128.2"], &["203.0.113.3"]),
    ];
    nodes[0].region = "a".into();
    (nodes[1].region, nodes[2].region) = ("b".into(), "b".into());
    // Private only: another region sees a member over the mesh, a non-member not at all.
    let clusters: Vec<Cluster> = vec![
        serde_json::from_str(r#"{"name":"db","names":{"dns":"private"},"services":[{"name":"pg","port":5432}]}"#)
            .unwrap(),
    ];
    let mesh: BTreeMap<Name, Ipv4Addr> = [("db-1", "100.64.0.1"), ("db-2", "100.64.0.2")]
        .iter()
        .map(|(n, a)| (n.parse().unwrap(), a.parse().unwrap()))
        .collect();
    let from_a = ZoneOptions { region: Some("local:a".parse().unwrap()), mesh: mesh.clone(), ..options() };
    let records = zone_records(&nodes, &clusters, &from_a).unwrap();
    let internal = master_file(&records, "lct.internal", View::Internal);
    assert!(internal.contains("db-1.db\t300\tIN\tA\t192.168.128.1"), "its own region privately: {internal}");
    assert!(internal.contains("db-2.db\t300\tIN\tA\t100.64.0.2"), "a member by its mesh address: {internal}");
    assert!(!internal.contains("db-3"), "a private-only non-member of region b is not named in a: {internal}");
    assert!(internal.contains("5432 db-2.db.lct.internal."), "a member is a service target: {internal}");
    let external = master_file(&records, "lct.internal", View::External);
    assert!(!external.contains("100.64."), "mesh addresses are for internal clients: {external}");
    let reverse = master_file(&records, "168.192.in-addr.arpa", View::Internal);
    assert_eq!(reverse.matches("\tPTR\t").count(), 1, "region a's 192.168.128.1 only: {reverse}");
    // Without a region the mesh changes nothing (one private network).
    let flat = zone_records(&nodes, &clusters, &ZoneOptions { mesh, ..options() }).unwrap();
    assert!(!master_file(&flat, "lct.internal", View::Internal).contains("100.64."));
}

#[test]
fn clusters_publish_what_their_names_policy_says() {
    let nodes = vec![
        node("web", "web", "web-1", &["192.168.128.1"], &["203.0.113.1"]),
        node("db", "db", "db-1", &["192.168.128.2"], &["203.0.113.2"]),
        node("cache", "cache", "cache-1", &["192.168.128.3"], &["203.0.113.3"]),
        node("zk", "zk", "zk-1", &["192.168.128.4"], &["203.0.113.4"]),
    ];
    let clusters: Vec<Cluster> = vec![
        serde_json::from_str(r#"{"name":"web","names":{"dns":"public"}}"#).unwrap(),
        serde_json::from_str(r#"{"name":"db","names":{"dns":"private"}}"#).unwrap(),
        serde_json::from_str(r#"{"name":"cache","names":{"dns":"none"},"services":[{"name":"redis","port":6379}]}"#)
            .unwrap(),
        serde_json::from_str(r#"{"name":"zk"}"#).unwrap(),
    ];
    let records = zone_records(&nodes, &clusters, &options()).unwrap();
    let internal = master_file(&records, "lct.internal", View::Internal);
    let external = master_file(&records, "lct.internal", View::External);
    // public: the public address only, to everyone.
    assert!(internal.contains("web-1.web\t300\tIN\tA\t203.0.113.1"), "{internal}");
    assert!(external.contains("web-1.web\t300\tIN\tA\t203.0.113.1"), "{external}");
    assert!(!internal.contains("192.168.128.1"), "{internal}");
    // private: internal clients only.
    assert!(internal.contains("db-1.db\t300\tIN\tA\t192.168.128.2"), "{internal}");
    assert!(!external.contains("db-1"), "{external}");
    assert!(!internal.contains("203.0.113.2"), "{internal}");
    // none: nothing, not even its services or reverse names.
    assert!(!records.iter().any(|r| r.name.contains("cache") || r.data.contains("cache")), "{records:?}");
    // split (no policy): as before.
    assert!(internal.contains("zk-1.zk\t300\tIN\tA\t192.168.128.4"), "{internal}");
    assert!(external.contains("zk-1.zk\t300\tIN\tA\t203.0.113.4"), "{external}");
    let reverse = master_file(&records, "168.192.in-addr.arpa", View::Internal);
    assert!(reverse.contains("db-1.db.lct.internal."), "{reverse}");
    assert!(!reverse.contains("web-1") && !reverse.contains("cache-1"), "{reverse}");
    // A policy that is not one names the field.
    let bad = serde_json::from_str::<Cluster>(r#"{"name":"x","names":{"dns":"secret"}}"#).unwrap_err();
    assert!(bad.to_string().contains("unknown variant `secret`"), "{bad}");
}

#[test]
fn bad_services_name_the_field() {
    let clusters: Vec<Cluster> = vec![
        serde_json::from_str(r#"{"name":"zk","services":[{"name":"zk","port":2181,"protocol":"sctp"}]}"#).unwrap(),
    ];
    let err = zone_records(&[], &clusters, &options()).unwrap_err().to_string();
    assert_eq!(err, "cluster zk: field services[0].protocol: unknown variant `sctp`, expected `tcp` or `udp`");
}
