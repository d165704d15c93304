//! `bsvp2p crawl`: discover a network breadth-first through `getaddr` and report every node
//! tried, as a table (reachable nodes), JSON (the whole report) or CSV (every node).
//!
//! Without `--seed` the crawl starts from the network's DNS seeds, resolved with the system
//! resolver and the network's default port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitcoinsv::p2p::crawler::{DEFAULT_CRAWL_CONCURRENCY, DEFAULT_MAX_NODES};
use bitcoinsv::p2p::text::printable;
use bitcoinsv::p2p::{CrawlConfig, CrawlReport, Crawler, ManagerConfig, NodeReport};

use super::{parse_seconds, write_output};
use crate::config_file::ConfigArgs;
use crate::error::CliError;

/// How `crawl` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table of the reachable nodes, with a summary line on stderr.
    Table,
    /// The whole report as one JSON document.
    Json,
    /// Every node tried, one CSV row each.
    Csv,
}

/// Arguments of `bsvp2p crawl`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to start, as ip:port or host:port (repeatable) [default: the network's DNS seeds].
    #[arg(long = "seed", value_name = "ADDR")]
    pub seeds: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Peers probed at once.
    #[arg(long, default_value_t = DEFAULT_CRAWL_CONCURRENCY)]
    pub concurrency: usize,
    /// Stop the whole crawl after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// How long to wait for each peer's `addr` answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub addr_wait: Duration,
    /// How long to wait for each peer's handshake, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub handshake_timeout: Duration,
    /// Most addresses to probe.
    #[arg(long, default_value_t = DEFAULT_MAX_NODES)]
    pub max_nodes: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let manager = args.config.load()?;
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let seeds = seeds(&args.seeds, &manager).await?;
        let mut config = CrawlConfig::new(manager.network, seeds);
        config.concurrency = args.concurrency;
        config.deadline = args.timeout;
        config.addr_timeout = args.addr_wait;
        config.handshake_timeout = args.handshake_timeout;
        config.connect_timeout = manager.connection.connect_timeout;
        config.max_nodes = args.max_nodes;
        config.user_agent = manager.user_agent.clone();
        config.bch_user_agents = manager
            .user_agent_ban_list()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let bar = crate::progress::spinner("{spinner} {elapsed_precise} found {prefix} | {msg}");
        let result = Crawler::run(config, |p| {
            bar.set_prefix(p.found.to_string());
            bar.set_message(format!(
                "tried {} | reachable {} | in flight {}",
                p.tried, p.reachable, p.in_flight
            ));
        })
        .await
        .map_err(|e| CliError::Usage(e.to_string()));
        bar.finish_and_clear();
        result
    })?;
    let text = match args.format {
        Format::Table => table(&report),
        Format::Json => serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Other(format!("encoding the report: {e}")))?,
        Format::Csv => csv(&report),
    };
    write_output(args.out.as_deref(), &text)?;
    eprintln!("{}", summary(&report));
    Ok(())
}

/// The starting addresses: `--seed` values (host names resolved), or the network's DNS seeds.
async fn seeds(given: &[String], config: &ManagerConfig) -> Result<Vec<SocketAddr>, CliError> {
    let mut out = Vec::new();
    if !given.is_empty() {
        for s in given {
            if let Ok(a) = s.parse::<SocketAddr>() {
                out.push(a);
                continue;
            }
            if !s.contains(':') {
                return Err(CliError::Usage(format!(
                    "--seed {s:?}: expected ip:port or host:port, e.g. 127.0.0.1:{}",
                    config.default_port
                )));
            }
            let found = tokio::net::lookup_host(s.as_str()).await.map_err(|e| {
                CliError::Usage(format!(
                    "--seed {s:?}: not an address and not a host name that resolves ({e})"
                ))
            })?;
            out.extend(found);
        }
        return Ok(out);
    }
    super::dns_seed_addresses(config, "pass --seed ADDR").await
}

fn summary(r: &CrawlReport) -> String {
    let mut by_chain: std::collections::BTreeMap<String, usize> = Default::default();
    for n in r.nodes.iter().filter(|n| n.reachable) {
        *by_chain.entry(n.chain.to_string()).or_default() += 1;
    }
    let chains: Vec<String> = by_chain.iter().map(|(c, n)| format!("{n} {c}")).collect();
    let mut s = format!(
        "{} reachable of {} tried, {} found in {:.1}s",
        r.reachable(),
        r.nodes.len(),
        r.found,
        r.elapsed.as_secs_f64()
    );
    if !chains.is_empty() {
        s.push_str(&format!(" ({})", chains.join(", ")));
    }
    if r.deadline_reached {
        s.push_str(&format!(
            "; deadline reached with {} address(es) untried",
            r.untried
        ));
    }
    s
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

fn rtt_ms(n: &NodeReport) -> String {
    n.rtt.map_or_else(
        || "-".into(),
        |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
    )
}

fn table(r: &CrawlReport) -> String {
    let header = [
        "ADDRESS",
        "CHAIN",
        "USER AGENT",
        "VERSION",
        "SERVICES",
        "HEIGHT",
        "RTT MS",
    ];
    let rows: Vec<[String; 7]> = r
        .nodes
        .iter()
        .filter(|n| n.reachable)
        .map(|n| {
            [
                n.address.to_string(),
                n.chain.to_string(),
                n.user_agent
                    .as_deref()
                    .map_or_else(|| "-".into(), printable),
                opt(&n.version),
                n.services.map_or("-".into(), |s| format!("{s:#x}")),
                opt(&n.start_height),
                rtt_ms(n),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for row in &rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(r: &CrawlReport) -> String {
    let mut out = vec![
        "address,reachable,chain,user_agent,version,services,start_height,rtt_ms,addresses,error"
            .to_string(),
    ];
    let blank = |v: String| if v == "-" { String::new() } else { v };
    for n in &r.nodes {
        let fields = [
            n.address.to_string(),
            n.reachable.to_string(),
            n.chain.to_string(),
            n.user_agent.as_deref().map(printable).unwrap_or_default(),
            blank(opt(&n.version)),
            blank(opt(&n.services)),
            blank(opt(&n.start_height)),
            blank(rtt_ms(n)),
            n.addresses.to_string(),
            n.error.clone().unwrap_or_default(),
        ];
        out.push(
            fields
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_field("/Bitcoin SV:1.2.2/"), "/Bitcoin SV:1.2.2/");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
