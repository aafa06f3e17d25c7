//! `GET /api/v1/peers`: query validation, paging, sorting by several keys, and the PeerInfo
//! shape shared with `GET /api/v1/peers/{id}`.

use std::collections::BTreeSet;

use serde_json::Value;

use testkit::get;

use crate::{assert_bad_request, create_peer, ids, list, super_peer};

#[actix_web::test]
async fn list_peers_validates_query() {
    let s = testkit::start().await;
    let cases: &[(&str, &str)] = &[
        ("", "pageSize"),
        ("pageNum=0", "pageSize"),
        ("pageSize=-1", "pageSize"),
        ("pageSize=abc", "pageSize"),
        ("pageSize=1.5", "pageSize"),
        ("pageSize=", "pageSize"),
        ("pageSize=2&pageNum=abc", "pageNum"),
        ("pageSize=2&pageNum=-1", "pageNum"),
        ("pageSize=2&sortDirect=up", "sortDirect"),
        ("pageSize=2&sortKey=bogus", "sortKey"),
        ("pageSize=2&sortKey=port&sortKey=bogus", "sortKey"),
    ];
    for (query, field) in cases {
        let (status, body) = get(&s, &format!("/api/v1/peers?{query}")).await;
        assert_bad_request(status, &body, Some(field), &format!("query {query:?}"));
    }
    let (status, body) = get(&s, "/api/v1/peers").await;
    assert_bad_request(status, &body, Some("pageSize"), "no query string");
    // Valid forms.
    for query in [
        "pageSize=0",
        "pageSize=10&pageNum=0",
        "pageSize=0&sortDirect=desc",
        "pageSize=0&sortDirect=Asc",
        "pageSize=0&sortKey=ID",
    ] {
        list(&s, query).await;
    }
}

#[actix_web::test]
async fn list_peers_pagination() {
    let s = testkit::start().await;
    let super_id = super_peer(&s).await["ID"].as_str().unwrap().to_string();
    let mut created = vec![super_id.clone()];
    for i in 1..=5 {
        created.push(create_peer(&s, &format!("page{i}"), &format!("10.1.0.{i}"), 20000 + i as u16).await);
    }
    // Default order: created ascending (the super peer registered first).
    let all = list(&s, "pageSize=0").await;
    assert_eq!(ids(&all), created);
    assert_eq!(ids(&list(&s, "pageSize=0&pageNum=3").await), created, "pageSize=0 is all, whatever pageNum");
    assert_eq!(ids(&list(&s, "pageSize=2").await), created[0..2], "pageNum defaults to 0");
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=0").await), created[0..2]);
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=1").await), created[2..4]);
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=2").await), created[4..6]);
    assert!(list(&s, "pageSize=2&pageNum=3").await.is_empty());
    assert!(list(&s, "pageSize=2&pageNum=9").await.is_empty());
    assert_eq!(ids(&list(&s, "pageSize=4&pageNum=1").await), created[4..6], "a partial last page");
    assert_eq!(ids(&list(&s, "pageSize=100").await), created);
    // DESC pages over the reversed order.
    let reversed: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=0&sortDirect=DESC").await), reversed[0..2]);
    assert_eq!(ids(&list(&s, "pageSize=2&pageNum=2&sortDirect=DESC").await), reversed[4..6]);
    // An empty page is `[]`, not null.
    let (_, body) = get(&s, "/api/v1/peers?pageSize=2&pageNum=9").await;
    assert_eq!(body.trim_end(), "[]");
}

#[actix_web::test]
async fn list_peers_multi_key_sort() {
    let s = testkit::start().await;
    for (host, ip, port) in [
        ("b-host", "10.2.0.1", 20000),
        ("a-host", "10.2.0.2", 20000),
        ("c-host", "10.2.0.3", 15000),
        ("a-host", "10.2.0.4", 30000),
        ("d-host", "10.2.0.5", 20000),
    ] {
        create_peer(&s, host, ip, port).await;
    }
    let sp = super_peer(&s).await;
    let super_id = sp["ID"].as_str().unwrap().to_string();
    let clients = |v: Vec<Value>| ids(&v).into_iter().filter(|id| *id != super_id).collect::<Vec<_>>();

    // port, then hostName (later keys break ties).
    let by_port_host = ["c-host-10.2.0.3", "a-host-10.2.0.2", "b-host-10.2.0.1", "d-host-10.2.0.5", "a-host-10.2.0.4"];
    let asc = list(&s, "pageSize=0&sortKey=port&sortKey=hostName&sortDirect=ASC").await;
    assert_eq!(clients(asc.clone()), by_port_host);
    let desc = list(&s, "pageSize=0&sortKey=port&sortKey=hostName&sortDirect=DESC").await;
    let rev: Vec<&str> = by_port_host.iter().rev().copied().collect();
    assert_eq!(clients(desc.clone()), rev);
    assert_eq!(clients(list(&s, "pageSize=0&sortKey=port&sortKey=hostName&sortDirect=desc").await), rev);
    assert_eq!(clients(list(&s, "pageSize=0&sortKey=port&sortKey=hostName").await), by_port_host, "ASC is the default");

    // The full order, super peer included, is exactly (port, hostName) with its own values.
    let mut expected: Vec<(u64, String, String)> = asc
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap_or(0),
                p["hostName"].as_str().unwrap_or("").to_string(),
                p["ID"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    expected.sort();
    let expected_ids: Vec<String> = expected.into_iter().map(|t| t.2).collect();
    assert_eq!(ids(&asc), expected_ids);
    let expected_rev: Vec<String> = expected_ids.iter().rev().cloned().collect();
    assert_eq!(ids(&desc), expected_rev);

    // Key order matters: hostName first, then port.
    let by_host_port = ["a-host-10.2.0.2", "a-host-10.2.0.4", "b-host-10.2.0.1", "c-host-10.2.0.3", "d-host-10.2.0.5"];
    assert_eq!(clients(list(&s, "pageSize=0&sortKey=hostName&sortKey=port").await), by_host_port);
    // Sort keys are PeerInfo's wire names; IP compares as an address.
    let by_ip = ["b-host-10.2.0.1", "a-host-10.2.0.2", "c-host-10.2.0.3", "a-host-10.2.0.4", "d-host-10.2.0.5"];
    assert_eq!(clients(list(&s, "pageSize=0&sortKey=IP").await), by_ip);
    // Sorting happens before paging.
    let page = list(&s, "pageSize=2&pageNum=1&sortKey=port&sortKey=hostName&sortDirect=DESC").await;
    assert_eq!(ids(&page), expected_rev[2..4]);
}

#[actix_web::test]
async fn peer_info_shape() {
    let s = testkit::start().await;
    let id = create_peer(&s, "shape", "10.3.0.1", 20000).await;
    let (status, body) = get(&s, &format!("/api/v1/peers/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("}\n"), "one trailing newline: {body:?}");
    let p = testkit::json(&body);
    let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["ID", "IP", "created", "hostName", "port", "version"].into());
    assert_eq!(p["ID"], id.as_str());
    assert_eq!(p["IP"], "10.3.0.1");
    assert_eq!(p["hostName"], "shape");
    assert_eq!(p["port"], 20000);
    assert_eq!(p["version"], "1.0.6");
    assert_rfc3339_millis(p["created"].as_str().unwrap());
    // The list carries the same objects.
    let all = list(&s, "pageSize=0").await;
    let listed = all.iter().find(|q| q["ID"] == id.as_str()).expect("listed");
    assert_eq!(listed, &p);
    for q in &all {
        assert_rfc3339_millis(q["created"].as_str().expect("created"));
    }
    // The super peer: advertise IP, no version (omitted when empty).
    let sp = super_peer(&s).await;
    assert_eq!(sp["IP"], "127.0.0.1");
    assert!(sp.get("version").is_none() || sp["version"].as_str().is_some_and(|v| !v.is_empty()), "{sp}");
}

/// RFC 3339 with exactly 3 fractional digits and an explicit zone (`Z` or `±HH:MM`).
fn assert_rfc3339_millis(s: &str) {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let ok = b.len() >= 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && match &s[23..] {
            "Z" => true,
            zone => {
                let z = zone.as_bytes();
                z.len() == 6
                    && (z[0] == b'+' || z[0] == b'-')
                    && z[1..3].iter().all(u8::is_ascii_digit)
                    && z[3] == b':'
                    && z[4..6].iter().all(u8::is_ascii_digit)
            }
        };
    assert!(ok, "created {s:?} is not RFC 3339 with 3 fractional digits");
}
