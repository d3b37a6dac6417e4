//! The web console in a real browser (headless Chromium driven through
//! chromedriver with fantoccini) against the two-node cluster in network
//! namespaces. The browser runs in the client's namespace and reaches the
//! console on node1 only; node2 is managed through node1 (proxy). What a
//! user sees: log in, PRIM/SECOND, Stop on the primary's menu and the other
//! node turning ALONE without a reload, the module log and a script run's
//! output, a wrong userconfig.xml shown at its line, a new virtual IP
//! applied to both nodes and answering, and a Monitor user who gets no
//! action buttons and whose forged action is refused. Screenshots of the
//! pages land in docs/console/ (taken by this run, so they stay true).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{pair, rt};
use fantoccini::{Client, ClientBuilder, Locator};
use safekit_bin::demo::{in_client_ns, Demo};

const CONSOLE: &str = "http://10.77.0.1:9010/console/";
const DRIVER_PORT: u16 = 9515;

fn privileged() -> bool {
    common::privileged(
        "console test needs root, iproute2, chromium and chromium-driver (apt-get install chromium chromium-driver)",
        &["ip", "chromium", "chromedriver"],
        false,
    )
}

/// chromedriver in the client's namespace. Dropped (also when the test
/// fails): it and the browser processes it started are ended by their PIDs.
struct Driver(Child);

/// The PIDs of `root`'s descendants, read from /proc.
fn descendants(root: u32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![i32::try_from(root).unwrap_or(0)];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

impl Drop for Driver {
    fn drop(&mut self) {
        let children = descendants(self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
        for pid in children {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console")
}

/// Polls `check` every 200 ms for at most `limit`; the last error if it never holds.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let end = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < end {
        match check().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within {limit:?} ({last})");
}

async fn text(c: &Client, css: &str) -> Result<String, String> {
    c.find(Locator::Css(css)).await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())
}

/// Waits until the badge of `node` in the module card reads `want`.
async fn badge(c: &Client, node: &str, want: &str) {
    let css = format!("article[data-module=\"demo\"] tr[data-node=\"{node}\"] .badge");
    until(&format!("{node} shows {want}"), Duration::from_secs(30), || async {
        let t = text(c, &css).await?;
        if t == want {
            Ok(true)
        } else {
            Err(format!("shows {t:?}"))
        }
    })
    .await;
}

/// Waits until the per-node answers in `results` are good for node1 and node2.
async fn both_good(c: &Client, results: &str, what: &str, secs: u64) {
    until(what, Duration::from_secs(secs), || async {
        let n1 = c.find(Locator::Css(&format!("{results} li.good[data-node=\"node1\"]"))).await.is_ok();
        let n2 = c.find(Locator::Css(&format!("{results} li.good[data-node=\"node2\"]"))).await.is_ok();
        if n1 && n2 {
            Ok(true)
        } else {
            Err(text(c, results).await.unwrap_or_default())
        }
    })
    .await;
}

/// Clicks the button labelled `label` in the actions menu of `node`.
async fn menu(c: &Client, node: &str, label: &str) {
    let row = format!("article[data-module=\"demo\"] tr[data-node=\"{node}\"]");
    c.find(Locator::Css(&format!("{row} details.menu summary"))).await.unwrap().click().await.unwrap();
    for b in c.find_all(Locator::Css(&format!("{row} details.menu button"))).await.unwrap() {
        if b.text().await.unwrap() == label {
            b.click().await.unwrap();
            return;
        }
    }
    panic!("no {label} in {node}'s menu");
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::create_dir_all(shots()).unwrap();
    std::fs::write(shots().join(name), png).unwrap();
}

async fn login(c: &Client, user: &str, password: &str) {
    c.goto(CONSOLE).await.unwrap();
    let u = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#user")).await.unwrap();
    u.clear().await.unwrap();
    u.send_keys(user).await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(password).await.unwrap();
    c.find(Locator::Css("#login button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#cards article[data-module=\"demo\"]")).await.unwrap();
}

/// GET / on the demo application at `addr`: the serving node's name.
fn app_answer(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    Some(r)
}

/// A fetch from the page, as a script in it could forge one: the status.
async fn page_fetch(c: &Client, method: &str, path: &str) -> i64 {
    let script = r#"
        const [method, path, done] = arguments;
        fetch("/api/v1.0/session", {credentials: "same-origin"}).then(r => r.json()).then(s =>
          fetch(path, {method, credentials: "same-origin", headers: {"X-CSRF-Token": s.csrf}}))
          .then(r => done(r.status), () => done(-1));
    "#;
    c.execute_async(script, vec![method.into(), path.into()]).await.unwrap().as_i64().unwrap_or(-2)
}

async fn scenario(c: Client) {
    eprintln!("console test: browser session open");
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(CONSOLE).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#user")).await.unwrap();
    screenshot(&c, "login.png").await;
    login(&c, "admin", "admin-password").await;
    badge(&c, "node1", "PRIM Ready").await;
    badge(&c, "node2", "SECOND Ready").await;
    screenshot(&c, "monitoring.png").await;
    let timing = c
        .execute(
            r#"const n = performance.getEntriesByType("navigation")[0];
               const r = performance.getEntriesByType("resource").filter(e => e.name.includes("/console/"));
               const p = performance.getEntriesByType("paint").find(e => e.name === "first-contentful-paint");
               return {bytes: n.transferSize + r.reduce((a, e) => a + e.transferSize, 0), fcp: p ? p.startTime : -1};"#,
            vec![],
        )
        .await
        .unwrap();
    println!("console page weight (bytes transferred) and first contentful paint (ms): {timing}");

    // Stop on the primary's menu (confirmed): node2 turns ALONE, no reload.
    eprintln!("console test: Stop on the primary's menu (confirmed): node2 turns ALONE, no reload.");
    c.execute("window.notReloaded = true;", vec![]).await.unwrap();
    menu(&c, "node1", "Stop").await;
    c.accept_alert().await.unwrap();
    badge(&c, "node2", "ALONE Ready").await;
    badge(&c, "node1", "STOP NotReady").await;
    assert_eq!(c.execute("return window.notReloaded === true;", vec![]).await.unwrap(), serde_json::json!(true), "the page reloaded");

    // The module log of node1 says who stopped it; a script line opens its run's output.
    eprintln!("console test: The module log of node1 says who stopped it; a script line opens its run's output.");
    c.find(Locator::Css("article[data-module=\"demo\"] h2 a")).await.unwrap().click().await.unwrap();
    until("the log shows the stop", Duration::from_secs(20), || async {
        let t = text(&c, "#log").await?;
        Ok(t.contains("Action stop called by admin@10.77.0.10"))
    })
    .await;
    screenshot(&c, "module.png").await;
    // A resource's history: its heartbeat went up when node2 joined.
    // (The table is redrawn at each live update: read and click in one script.)
    let names =
        c.execute(r#"return [...document.querySelectorAll("tr[data-resource]")].map((r) => r.dataset.resource);"#, vec![]).await.unwrap();
    println!("console test: node1's resources: {names}");
    let heartbeat = names
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
        .find(|n| n.starts_with("heartbeat."))
        .expect("a heartbeat resource")
        .to_string();
    c.execute(r#"document.querySelector(`tr[data-resource="${arguments[0]}"] button`).click();"#, vec![heartbeat.clone().into()])
        .await
        .unwrap();
    until("the heartbeat's history is shown", Duration::from_secs(10), || async {
        let t = text(&c, "#resource-history").await?;
        Ok(t.contains(&format!("{heartbeat} on node1")) && t.contains("up"))
    })
    .await;
    // Paused, so that the line stays while it is clicked.
    c.find(Locator::Css(".toolbar button[aria-pressed]")).await.unwrap().click().await.unwrap();
    let mut stop_prim = None;
    for b in c.find_all(Locator::Css("#log button.linkish")).await.unwrap() {
        if b.text().await.unwrap().ends_with("| Script stop_prim") {
            stop_prim = Some(b);
        }
    }
    stop_prim.expect("the stop_prim run's line").click().await.unwrap();
    until("the run's output is shown", Duration::from_secs(10), || async {
        let t = text(&c, "#userlog").await?;
        Ok(t.starts_with("userlog_") && t.contains(" on node1"))
    })
    .await;

    // Global stop (secondaries first, then the primary): both STOP.
    eprintln!("console test: Global stop (secondaries first, then the primary): both STOP.");
    c.goto(&format!("{CONSOLE}#/")).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("article[data-module=\"demo\"] .global")).await.unwrap();
    for b in c.find_all(Locator::Css("article[data-module=\"demo\"] .global button")).await.unwrap() {
        if b.text().await.unwrap() == "Stop" {
            b.click().await.unwrap();
        }
    }
    c.accept_alert().await.unwrap();
    badge(&c, "node2", "STOP NotReady").await;
    badge(&c, "node1", "STOP NotReady").await;

    // A wrong userconfig.xml: the reader's error at its line, in the list and the gutter.
    eprintln!("console test: A wrong userconfig.xml: the reader's error at its line, in the list and the gutter.");
    c.goto(&format!("{CONSOLE}#/config/module/demo")).await.unwrap();
    let vip = c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#f-vip")).await.unwrap();
    assert_eq!(vip.prop("value").await.unwrap().as_deref(), Some("10.77.0.100"));
    c.execute(
        r#"const a = document.getElementById("userconfig");
           window.goodXml = a.value;
           const lines = a.value.split("\n");
           lines.splice(3, 0, "<bogus/>");
           a.value = lines.join("\n");
           a.dispatchEvent(new Event("input"));"#,
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#check")).await.unwrap().click().await.unwrap();
    until("the error is shown at line 4", Duration::from_secs(10), || async {
        let t = text(&c, "#config-errors").await?;
        let marked = c.find(Locator::Css(".gutter span.err[data-line=\"4\"]")).await.is_ok();
        Ok(t.contains("userconfig.xml:4:") && marked)
    })
    .await;
    screenshot(&c, "config-error.png").await;

    // A new virtual IP through the form, applied to both nodes.
    eprintln!("console test: A new virtual IP through the form, applied to both nodes.");
    c.execute(r#"const a = document.getElementById("userconfig"); a.value = window.goodXml; a.dispatchEvent(new Event("input"));"#, vec![])
        .await
        .unwrap();
    let vip = c.find(Locator::Css("#f-vip")).await.unwrap();
    vip.clear().await.unwrap();
    vip.send_keys("10.77.0.101").await.unwrap();
    c.find(Locator::Css("#settings button[type=submit]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#apply")).await.unwrap().click().await.unwrap();
    both_good(&c, "#apply-results", "applied on both nodes", 30).await;
    screenshot(&c, "config.png").await;

    // Started again from the menus: the new VIP answers, from node1.
    eprintln!("console test: Started again from the menus: the new VIP answers, from node1.");
    c.goto(&format!("{CONSOLE}#/")).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("article[data-module=\"demo\"] tr[data-node=\"node1\"]"))
        .await
        .unwrap();
    menu(&c, "node1", "Force start as primary").await;
    c.accept_alert().await.unwrap();
    badge(&c, "node1", "ALONE Ready").await;
    menu(&c, "node2", "Start").await;
    badge(&c, "node2", "SECOND Ready").await;
    badge(&c, "node1", "PRIM Ready").await;
    let vip = SocketAddr::from(([10, 77, 0, 101], 8080));
    until("the new VIP answers", Duration::from_secs(20), || async {
        Ok(tokio::task::spawn_blocking(move || app_answer(vip)).await.ok().flatten().is_some_and(|a| a.contains("node1")))
    })
    .await;

    // The cluster wizard: typed addresses checked, cluster.xml saved on both nodes.
    eprintln!("console test: the cluster wizard checks the addresses and saves cluster.xml on both nodes.");
    c.goto(&format!("{CONSOLE}#/config/cluster")).await.unwrap();
    until("the wizard shows both nodes", Duration::from_secs(20), || async {
        Ok(c.find_all(Locator::Css(".node-addr")).await.map_err(|e| e.to_string())?.len() == 2)
    })
    .await;
    let names = c.find_all(Locator::Css(".node-name")).await.unwrap();
    names[1].clear().await.unwrap();
    names[1].send_keys("nodeX").await.unwrap();
    c.find(Locator::Css("#probe")).await.unwrap().click().await.unwrap();
    until("both addresses checked", Duration::from_secs(15), || async {
        let cells = c.find_all(Locator::Css("td.probe")).await.map_err(|e| e.to_string())?;
        let mut t = Vec::new();
        for cell in cells {
            t.push(cell.text().await.map_err(|e| e.to_string())?);
        }
        Ok(t.len() == 2 && t[0].starts_with("node1 (safekit ") && t[1] == "answers as node2, not nodeX")
    })
    .await;
    names[1].clear().await.unwrap();
    names[1].send_keys("node2").await.unwrap();
    c.find(Locator::Css("#probe")).await.unwrap().click().await.unwrap();
    until("node2 checked", Duration::from_secs(15), || async {
        Ok(c.find_all(Locator::Css("td.probe.good")).await.map_err(|e| e.to_string())?.len() == 2)
    })
    .await;
    // An extra network for replication, written into the XML and checked.
    c.find(Locator::Css("#add-lan")).await.unwrap().click().await.unwrap();
    let lan = c.find(Locator::Css("#lan-1")).await.unwrap();
    lan.clear().await.unwrap();
    lan.send_keys("replication").await.unwrap();
    let extra = c.find_all(Locator::Css(".lan-addr[data-lan=\"1\"]")).await.unwrap();
    assert_eq!(extra.len(), 2, "an address field per node on the new network");
    extra[0].send_keys("10.78.0.1").await.unwrap();
    extra[1].send_keys("10.78.0.2").await.unwrap();
    c.find(Locator::Css("#to-xml")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#cluster-check")).await.unwrap().click().await.unwrap();
    until("the two-network cluster.xml is valid", Duration::from_secs(10), || async {
        Ok(text(&c, "#toast").await?.contains("cluster.xml is valid"))
    })
    .await;
    screenshot(&c, "cluster.png").await;
    c.find(Locator::Css("#cluster-save")).await.unwrap().click().await.unwrap();
    both_good(&c, "#cluster-results", "cluster.xml saved on both nodes", 20).await;

    // A new module from the package in SAFE/Application_Modules, on both nodes: STOP.
    eprintln!("console test: a new module from a package, installed on both nodes.");
    c.goto(&format!("{CONSOLE}#/config")).await.unwrap();
    until("the package is offered", Duration::from_secs(20), || async {
        Ok(c.find(Locator::Css("#package option[value=\"generic/demo.safe\"]")).await.is_ok())
    })
    .await;
    c.find(Locator::Css("#new-module")).await.unwrap().send_keys("shop").await.unwrap();
    c.find(Locator::Css("#package option[value=\"generic/demo.safe\"]")).await.unwrap().click().await.unwrap();
    for b in c.find_all(Locator::Css("button[type=submit]")).await.unwrap() {
        if b.text().await.unwrap() == "Install" {
            b.click().await.unwrap();
        }
    }
    both_good(&c, "#install-results", "installed on both nodes", 30).await;
    c.goto(&format!("{CONSOLE}#/")).await.unwrap();
    for node in ["node1", "node2"] {
        let css = format!("article[data-module=\"shop\"] tr[data-node=\"{node}\"] .badge");
        until(&format!("shop on {node} shows STOP"), Duration::from_secs(20), || async { Ok(text(&c, &css).await? == "STOP NotReady") })
            .await;
    }

    // The new module's form: a monitored process, a TCP checker, a split-brain
    // witness written into userconfig.xml, checked, applied to both nodes.
    eprintln!("console test: the new module's form (process, TCP checker, witness), checked and applied.");
    c.goto(&format!("{CONSOLE}#/config/module/shop")).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#f-procs")).await.unwrap();
    for (field, value) in [("#f-procs", "shopd"), ("#f-tcp", "127.0.0.1:8080"), ("#f-witness", "10.77.0.10")] {
        let f = c.find(Locator::Css(field)).await.unwrap();
        f.clear().await.unwrap();
        f.send_keys(value).await.unwrap();
    }
    c.find(Locator::Css("#settings button[type=submit]")).await.unwrap().click().await.unwrap();
    let written = c.find(Locator::Css("#userconfig")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    for want in [
        r#"<proc name="shopd" atleast="1" action="restart" class="prim"/>"#,
        r#"<to addr="127.0.0.1" port="8080" interval="10" timeout="5"/>"#,
        r#"<splitbrain ident="witness" exec="ping" arg="10.77.0.10"/>"#,
    ] {
        assert!(written.contains(want), "{want} not in the written userconfig.xml:\n{written}");
    }
    c.find(Locator::Css("#check")).await.unwrap().click().await.unwrap();
    until("the form's configuration is valid", Duration::from_secs(10), || async {
        let t = text(&c, "#toast").await?;
        let errors = c.find_all(Locator::Css("#config-errors li.bad")).await.map_err(|e| e.to_string())?.len();
        if errors > 0 {
            return Err(text(&c, "#config-errors").await.unwrap_or_default());
        }
        Ok(t.contains("the configuration is valid"))
    })
    .await;
    c.find(Locator::Css("#apply")).await.unwrap().click().await.unwrap();
    both_good(&c, "#apply-results", "the form's configuration applied on both nodes", 30).await;
    c.goto(&format!("{CONSOLE}#/")).await.unwrap();

    // Estimate of the data sync from node2's menu: the answer shown.
    eprintln!("console test: estimate the data sync from node2's menu.");
    c.execute(r#"document.getElementById("toast").replaceChildren();"#, vec![]).await.unwrap();
    menu(&c, "node2", "Estimate the data sync").await;
    until("the estimate is shown", Duration::from_secs(15), || async { Ok(text(&c, "#toast").await?.starts_with("node2: ")) }).await;
    println!("console test: the estimate shown for node2: {}", text(&c, "#toast").await.unwrap_or_default());

    // Snapshots for support: node2's through node1, and the whole cluster's.
    eprintln!("console test: snapshots from the Debug page.");
    c.goto(&format!("{CONSOLE}#/debug")).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("a[download=\"snapshot-demo-cluster.zip\"]")).await.unwrap();
    screenshot(&c, "debug.png").await;
    for link in ["snapshot-demo-node2.zip", "snapshot-demo-cluster.zip"] {
        let href = c.find(Locator::Css(&format!("a[download=\"{link}\"]"))).await.unwrap().attr("href").await.unwrap().unwrap();
        assert_eq!(page_fetch(&c, "GET", &href).await, 200, "{link} from {href}");
    }

    // Uninstall of the new module from its editor: gone from both nodes.
    eprintln!("console test: uninstall the new module from both nodes.");
    c.goto(&format!("{CONSOLE}#/config/module/shop")).await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#f-vip")).await.unwrap();
    let procs = c.find(Locator::Css("#f-procs")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(procs.as_deref(), Some("shopd"), "the applied process, read back from node1");
    // Its package downloads, and the configuration applied is in its history, restorable.
    let package = c.find(Locator::Css("a[download=\"shop.safe\"]")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert_eq!(page_fetch(&c, "GET", &package).await, 200, "download of {package}");
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#history button")).await.unwrap().click().await.unwrap();
    c.accept_alert().await.unwrap();
    until("restored on node1", Duration::from_secs(15), || async { Ok(text(&c, "#toast").await?.contains("node1: restored")) }).await;
    for b in c.find_all(Locator::Css("button")).await.unwrap() {
        if b.text().await.unwrap() == "Uninstall" {
            b.click().await.unwrap();
        }
    }
    c.accept_alert().await.unwrap();
    both_good(&c, "#apply-results", "uninstalled from both nodes", 30).await;
    c.goto(&format!("{CONSOLE}#/")).await.unwrap();
    badge(&c, "node1", "PRIM Ready").await;
    until("the shop card is gone", Duration::from_secs(20), || async {
        Ok(c.find_all(Locator::Css("article[data-module=\"shop\"]")).await.map_err(|e| e.to_string())?.is_empty())
    })
    .await;

    // Phone width.
    eprintln!("console test: Phone width.");
    c.set_window_size(390, 844).await.unwrap();
    screenshot(&c, "monitoring-phone.png").await;
    c.set_window_size(1280, 900).await.unwrap();

    // A Monitor user: no action buttons, and a forged action is refused.
    eprintln!("console test: A Monitor user: no action buttons, and a forged action is refused.");
    c.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#user")).await.unwrap();
    login(&c, "watcher", "watcher-password").await;
    badge(&c, "node1", "PRIM Ready").await;
    assert!(c.find_all(Locator::Css("details.menu, .global")).await.unwrap().is_empty(), "a Monitor user sees action buttons");
    let config_link = c.find(Locator::Css("#nav a[data-page=\"config\"]")).await.unwrap();
    assert!(!config_link.is_displayed().await.unwrap(), "a Monitor user sees Configuration");
    assert_eq!(page_fetch(&c, "POST", "/api/v1.0/modules/demo/actions/stop").await, 403);
    assert_eq!(page_fetch(&c, "POST", "/api/v1.0/nodes/node2/modules/demo/actions/stop").await, 403);
    tokio::time::sleep(Duration::from_secs(1)).await;
    badge(&c, "node1", "PRIM Ready").await;
    badge(&c, "node2", "SECOND Ready").await;
    c.close().await.unwrap();
}

#[test]
fn the_console_runs_the_cluster_in_a_real_browser() {
    let _serial = common::serial();
    if !privileged() {
        return;
    }
    let mut demo = Demo::setup().unwrap();
    let conf = demo.node_dir(0).join("safe/web/conf");
    let accounts = safekit_core::daemon::web::accounts::Accounts::new(&conf);
    accounts.set_password("admin", "admin-password").unwrap();
    accounts.set_password("watcher", "watcher-password").unwrap();
    std::fs::write(conf.join("group.conf"), "Admin : admin\nMonitor : watcher\n").unwrap();
    // A package in SAFE/Application_Modules/generic on both nodes, as an
    // install puts SafeKit's module packages there.
    for i in 0..2 {
        let layout = safekit_core::layout::Layout { safe: demo.node_dir(i).join("safe"), safevar: demo.node_dir(i).join("var") };
        let safe = safekit_core::modules::package(&layout, "demo").unwrap();
        let generic = layout.safe.join("Application_Modules/generic");
        std::fs::create_dir_all(&generic).unwrap();
        std::fs::write(generic.join("demo.safe"), safe).unwrap();
    }
    rt().block_on(pair(&mut demo, 0));
    eprintln!("console test: node1 PRIM, node2 SECOND");

    let profile = std::env::temp_dir().join(format!("safekit-chromium-{}", std::process::id()));
    let driver = Command::new("ip")
        .args(["netns", "exec", &Demo::client_ns(), "chromedriver", &format!("--port={DRIVER_PORT}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let _driver = Driver(driver);
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let run = in_client_ns(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut caps = serde_json::Map::new();
            caps.insert(
                "goog:chromeOptions".into(),
                serde_json::json!({
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", profile_arg, "--window-size=1280,900"]
                }),
            );
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let mut client = None;
            for _ in 0..50 {
                match ClientBuilder::new(connector.clone()).capabilities(caps.clone()).connect(&format!("http://127.0.0.1:{DRIVER_PORT}")).await {
                    Ok(c) => {
                        client = Some(c);
                        break;
                    }
                    Err(e) => {
                        eprintln!("console test: chromedriver: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            let client = client.expect("chromedriver answers within 10 s");
            if tokio::time::timeout(Duration::from_secs(300), scenario(client)).await.is_err() {
                panic!("the browser scenario took more than 5 minutes");
            }
        });
    });
    let outcome = run.join();
    let _ = std::fs::remove_dir_all(&profile);
    if matches!(outcome, Ok(Some(()))) {
        for i in 0..2 {
            let saved = std::fs::read_to_string(demo.node_dir(i).join("var/cluster/cluster.xml")).unwrap();
            let want = "<lan name=\"replication\">\n      <node name=\"node1\" addr=\"10.78.0.1\"/>\n      <node name=\"node2\" addr=\"10.78.0.2\"/>";
            assert!(saved.contains(want), "node{}'s cluster.xml has the network added in the wizard: {saved}", i + 1);
            assert!(!demo.node_dir(i).join("safe/modules/shop").exists(), "shop uninstalled from node{}", i + 1);
        }
    }
    match outcome {
        Ok(Some(())) => {}
        Ok(None) => panic!("could not enter the client's namespace"),
        Err(e) => std::panic::resume_unwind(e),
    }
}
