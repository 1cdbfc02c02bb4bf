//! The client against what is not etcd: a server on loopback answering with crafted bytes
//! (too much, not JSON, keys outside the range asked for, an error status, a redirect).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use super::*;

/// A one-connection-at-a-time HTTP server answering every request with `answer`.
fn server(answer: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(&answer);
        }
    });
    addr
}

fn http(status: &str, body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn client(addr: &str, max_response: u64) -> Client {
    let url = EtcdUrl::parse(&format!("etcd://{addr}/lct")).unwrap();
    let options = Options { max_response, retry_for: Duration::from_secs(1), ..Options::default() };
    Client::new(&url, &TlsFiles::default(), options).unwrap()
}

#[test]
fn an_answer_over_the_bound_is_refused() {
    let addr = server(http("200 OK", &vec![b' '; 4096]));
    let e = client(&addr, 1024).get(b"lct/x").unwrap_err();
    assert!(matches!(e, EtcdError::TooLarge { limit: 1024, .. }), "{e}");
}

#[test]
fn what_is_not_etcd_is_said_so() {
    let addr = server(http("200 OK", b"<html>hello</html>"));
    let e = client(&addr, 1 << 20).get(b"lct/x").unwrap_err().to_string();
    assert!(e.contains("not an answer of etcd's") && e.contains(&addr), "{e}");
    let addr = server(http("404 Not Found", b"<html>no</html>"));
    let e = client(&addr, 1 << 20).put(b"lct/x", b"v", 0).unwrap_err().to_string();
    assert!(e.contains("HTTP 404"), "{e}");
    // A redirect is not followed (the request would go where the answer says).
    let addr = server(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://203.0.113.9/v3/kv/put\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec());
    let e = client(&addr, 1 << 20).put(b"lct/x", b"v", 0).unwrap_err().to_string();
    assert!(e.contains("HTTP 307"), "{e}");
}

#[test]
fn a_range_answer_with_keys_outside_the_range_is_refused() {
    // Asked for lct/plans/..., answered with a key of another prefix.
    let body = br#"{"header":{"revision":"5"},"kvs":[{"key":"b3RoZXIva2V5","value":"eA==","mod_revision":"3"}]}"#;
    let addr = server(http("200 OK", body));
    let e = client(&addr, 1 << 20).list(b"lct/plans/").unwrap_err().to_string();
    assert!(e.contains("outside the range"), "{e}");
}

#[test]
fn etcds_refusals_are_passed_on_with_their_status() {
    let body = br#"{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}"#;
    let addr = server(http("403 Forbidden", body));
    let e = client(&addr, 1 << 20).put(b"lct/x", b"v", 0).unwrap_err().to_string();
    assert!(e.contains("permission denied") && e.contains("gRPC status 7") && e.contains(&addr), "{e}");
}
