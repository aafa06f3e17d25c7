//! SIGKILL while preheats run and dfget clients download: the preheat records survive the
//! restart and no preheat is left RUNNING, and the clients finish at the second supernode of
//! their node list.

use dfget_sim::PeerConfig;
use testkit::swarm::Swarm;

use super::*;

const CLIENTS: usize = 3;
const LEN: u64 = 24 * MIB;

#[actix_web::test]
async fn sigkill_while_preheats_run_and_clients_download() {
    let origin = Origin::start().await;
    // the clients' file and one preheat's hold after two pieces, so both are under way at the kill
    for (path, seed) in [("/f.bin", 51), ("/p.bin", 52), ("/q.bin", 53)] {
        origin.add_generated(path, seed, LEN);
    }
    for path in ["/f.bin", "/p.bin"] {
        origin.pause_after(path, 2 * PAYLOAD + 1000);
    }
    let exe = env!("CARGO_BIN_EXE_supernode");
    let homes = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut servers: Vec<Option<ChildServer>> = homes.iter().map(|h| Some(ChildServer::start(exe, h.path()))).collect();
    let nodes: Vec<String> = servers.iter().flatten().map(|s| s.control().to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::start(CLIENTS, |i| {
        let mut c = PeerConfig::with_nodes(nodes.clone(), origin.url("/f.bin"), dir.path().join(format!("c{i}.bin")));
        // one order for all: they register with the same supernode
        c.node_order_seed = Some(7);
        c
    });
    let downloads = futures_util::future::join_all(swarm.peers().iter().map(|p| p.download()));
    let scenario = async {
        eventually(Duration::from_secs(30), "every client holds a piece", || async {
            swarm.peers().iter().all(|p| p.stats().suc_reports_ok >= 1)
        })
        .await;
        let first = swarm.peers()[0].node().expect("registered");
        let x = nodes.iter().position(|n| *n == first).expect("one of the list");
        let victim = servers[x].as_ref().expect("running");
        let done = create_preheat(victim, &origin.url("/q.bin")).await;
        assert_eq!(wait_preheat(victim, &done).await["status"], "SUCCESS");
        let running = create_preheat(victim, &origin.url("/p.bin")).await;
        let (_, v) = testkit::get_json(victim, &format!("/preheats/{running}")).await;
        assert_eq!(v["status"], "RUNNING", "{v}");
        let home = homes[x].path();
        eventually(Duration::from_secs(10), "P is half written", || async {
            std::fs::metadata(tmp_path(home, &url_task_id(&origin.url("/p.bin")))).is_ok_and(|m| m.len() >= PIECE)
        })
        .await;
        let records = std::fs::read_to_string(home.join("preheats.json")).expect("preheats.json");
        assert!(records.contains("RUNNING"), "{records}");

        let killed = servers[x].take().map(|mut s| s.kill());
        assert!(killed.is_some_and(|k| !k.success()), "killed with SIGKILL");
        for path in ["/f.bin", "/p.bin"] {
            origin.resume(path);
        }
        // the same home: the records are whole and the running preheat does not stay RUNNING
        let restarted = ChildServer::start(exe, home);
        assert_eq!(wait_preheat(&restarted, &done).await["status"], "SUCCESS", "the finished record is kept");
        let ended = wait_preheat(&restarted, &running).await;
        let reason = ended["errorMsg"].as_str().unwrap_or_default();
        assert!(ended["status"] == "SUCCESS" || !reason.is_empty(), "FAILED with a reason, or resumed: {ended}");
        let records = std::fs::read(home.join("preheats.json")).expect("preheats.json");
        let records: serde_json::Value = serde_json::from_slice(&records).expect("preheats.json parses");
        assert_eq!(records["preheats"].as_array().map(Vec::len), Some(2), "{records}");
        eprintln!("crash figures: the preheat running at the kill ended {} {reason}", ended["status"]);
        (nodes[x].clone(), nodes[1 - x].clone(), restarted)
    };
    let (results, (killed, survivor, _restarted)) = futures_util::join!(downloads, scenario);
    let md5 = origin.content("/f.bin").md5_hex();
    for (i, r) in results.iter().enumerate() {
        let r = r.as_ref().unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(r.md5, md5, "client {i}");
        assert_eq!(r.stats.registrations, [killed.clone(), survivor.clone()], "client {i} moved on");
        assert!(r.stats.fetched.iter().any(|f| f.node == survivor), "client {i} fetched at the survivor");
    }
    swarm.stop_uploaders().await;
}
